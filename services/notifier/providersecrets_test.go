package notifier_test

import (
	"fmt"
	"net"
	"strings"
	"testing"

	notifierv1 "github.com/retainhq/retain/proto/gen/go/retain/notifier/v1"
	"github.com/retainhq/retain/services/notifier"
)

// TestProviderCredentialsStayOutOfReasonsAndLogs: a delivery's reason
// and trail are the shop's to read (GetDelivery, ListDeliveries), the
// logs the operator's; a provider URL's credential is in neither.
func TestProviderCredentialsStayOutOfReasonsAndLogs(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String() // nothing listens: every call fails
	l.Close()
	s := setup(t, func(c *notifier.Config) {
		c.SMS.URL = "http://sid:hunter2@" + down + "/v1/send?api_key=SECRET"
		c.MaxAttempts = 1
	})
	s.customers(t, "shop", customer{id: "c", phone: "+4915112345678"})
	s.request(t, &notifierv1.NotificationRequested{RequestId: "r", TenantId: "shop", CustomerId: "c", Channel: notifierv1.Channel_CHANNEL_SMS,
		Category: notifierv1.Category_CATEGORY_TRANSACTIONAL, TemplateKey: "renewal_reminder"}, "")
	d := s.delivery(t, "shop", "r", "failed")
	said := map[string]string{"reason": d.GetReason(), "log": s.logs.String()}
	for i, x := range d.GetDecisions() {
		said[fmt.Sprintf("trail step %d", i)] = x.GetReason()
	}
	if !strings.Contains(d.GetReason(), "http://"+down+":") || strings.Contains(d.GetReason(), "/v1/send") {
		t.Errorf("the reason %q does not name the provider by its host alone", d.GetReason())
	}
	for where, text := range said {
		for _, secret := range []string{"hunter2", "SECRET", "sid:"} {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("the %s shows %s: ...%s...", where, secret, text[max(0, i-80):min(len(text), i+40)])
			}
		}
	}
}
