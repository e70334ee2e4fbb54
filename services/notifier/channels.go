package notifier

import (
	"log/slog"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier/internal/channel"
)

// channelSettings are the channels in the order start-up names them, each
// with the settings that give it a provider.
var channelSettings = []struct {
	channel  notifierv1.Channel
	name     string
	settings string
}{
	{notifierv1.Channel_CHANNEL_EMAIL, "email", "RETAIN_NOTIFIER_SMTP_ADDR and RETAIN_NOTIFIER_SMTP_FROM"},
	{notifierv1.Channel_CHANNEL_SMS, "sms", "RETAIN_NOTIFIER_SMS_URL (and RETAIN_NOTIFIER_SMS_AUTH for the provider's credential)"},
	{notifierv1.Channel_CHANNEL_WEBHOOK, "webhook", "RETAIN_NOTIFIER_WEBHOOK_URL and RETAIN_NOTIFIER_WEBHOOK_SECRET"},
}

// warnUnconfigured logs a warning per channel without a sender. The
// notifier runs without one (a shop may send only email), but every
// delivery to it fails, and until now nothing said so before the first
// campaign ran: the warning names what happens and what to set.
func warnUnconfigured(log *slog.Logger, senders map[notifierv1.Channel]channel.Sender) {
	for _, c := range channelSettings {
		if senders[c.channel] == nil {
			log.Warn("notification channel not configured: every delivery to it will be FAILED channel_not_configured",
				"channel", c.name, "set", c.settings+", or RETAIN_NOTIFIER_OUTBOX_DIR to write messages to files")
		}
	}
}
