package app

import (
	"errors"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retainhq/retain/platform/testenv"
)

// TestProviderLogBounded: whatever the pattern of failures, a channel
// writes at most two lines a minute, and its lines account for every
// failure.
func TestProviderLogBounded(t *testing.T) {
	at := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	fail := providerFailure{channel: "sms", tenant: "shop", requestID: "r", attempt: 1, code: "provider_unavailable", willRetry: true,
		err: errors.New("HTTP 503: down")}
	counted := regexp.MustCompile(` failures=(\d+)`)
	run := func(traffic func(p *providerLog)) (lines []string, failures int) {
		var buf testenv.SyncBuffer
		traffic(newProviderLog(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute))
		for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
			lines = append(lines, l)
			if m := counted.FindStringSubmatch(l); m != nil && strings.Contains(l, "level=WARN") {
				n, _ := strconv.Atoi(m[1])
				failures += n
			}
		}
		return lines, failures
	}

	t.Run("down for ten minutes", func(t *testing.T) {
		// A failure a second for ten minutes, then a success.
		lines, failures := run(func(p *providerLog) {
			for i := range 600 {
				p.failed(at.Add(time.Duration(i)*time.Second), fail)
			}
			p.accepted(at.Add(10*time.Minute), "sms")
		})
		// The first at 0s, counts at 60s ... 540s (59 failures after the
		// last are told by the recovery).
		if len(lines) != 11 || failures != 1+9*60 || !strings.Contains(lines[10], "level=INFO msg=\"notification provider accepts messages again\" channel=sms failures=600 failing_for=10m0s") {
			t.Fatalf("%d lines counting %d failures, want 11 (first, 9 counts, recovery of all 600) counting 541:\n%s", len(lines), failures, strings.Join(lines, "\n"))
		}
	})

	t.Run("every other message rejected", func(t *testing.T) {
		// Ten minutes of 5 calls a second, every other one failing.
		lines, failures := run(func(p *providerLog) {
			for i := range 3000 {
				now := at.Add(time.Duration(i) * 200 * time.Millisecond)
				if i%2 == 0 {
					p.failed(now, fail)
				} else {
					p.accepted(now, "sms")
				}
			}
			p.failed(at.Add(10*time.Minute), fail) // reports the rest
		})
		if len(lines) > 2*11 || failures != 1501 {
			t.Fatalf("%d lines counting %d failures, want at most 22 counting 1501:\n%s", len(lines), failures, strings.Join(lines, "\n"))
		}
	})

	t.Run("channels apart", func(t *testing.T) {
		lines, _ := run(func(p *providerLog) {
			p.failed(at, fail)
			email := fail
			email.channel = "email"
			p.failed(at, email)
			p.accepted(at, "email")
		})
		if len(lines) != 3 || !strings.Contains(lines[0], "channel=sms") || !strings.Contains(lines[1], "channel=email") || !strings.Contains(lines[2], "channel=email") {
			t.Fatalf("want a failure per channel and email's recovery:\n%s", strings.Join(lines, "\n"))
		}
	})
}
