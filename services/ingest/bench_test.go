package ingest_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/retainhq/retain/platform/auth"
	"github.com/retainhq/retain/platform/auth/authtest"
	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/testenv"
)

// BenchmarkIngest measures, in one run on the same machine:
//   - raw: JetStream atomic batches of 500 ~300 B messages with an fsync on
//     every write (the durable limit ingest can approach);
//   - ingest over HTTP, a separate process as in production, with 32 clients
//     sending 500-event batches and 32 clients sending 10-event requests
//     (carried by group commit), answers only after the events are on disk;
//
// and prints the ratios, p50/p99 request latency and the ingest process RSS.
// RETAIN_BENCH_SECONDS sets each phase's length (default 10).
func BenchmarkIngest(b *testing.B) {
	seconds := testenv.BenchInt("RETAIN_BENCH_SECONDS", 10)
	phase := time.Duration(seconds) * time.Second
	bin := buildIngest(b)
	for range b.N {
		ns := testenv.NATS(b)
		dbURL := testenv.Postgres(b)

		raw := rawAtomicRate(b, ns.URL(), phase)
		proc := startIngest(b, bin, ns.URL(), dbURL)
		big := proc.load(b, 32, 500, phase)
		small := proc.load(b, 32, 10, phase)
		rss, hwm := proc.memory(b)

		b.ReportMetric(raw, "raw-events/s")
		b.ReportMetric(big.rate, "ingest500-events/s")
		b.ReportMetric(small.rate, "ingest10-events/s")
		b.ReportMetric(big.rate/raw*100, "%raw-500")
		fmt.Printf("\n%-44s %12s %9s %9s %9s\n", "scenario", "events/s", "vs raw", "p50", "p99")
		fmt.Printf("%-44s %12.0f %9s %9s %9s\n", "raw JetStream atomic batch 500, fsync always", raw, "100%", "", "")
		for _, r := range []loadResult{big, small} {
			fmt.Printf("%-44s %12.0f %8.0f%% %9s %9s\n", r.name, r.rate, r.rate/raw*100, r.p50.Round(100*time.Microsecond), r.p99.Round(100*time.Microsecond))
		}
		fmt.Printf("%-44s %12.0f requests/s (%.0fx one fsync per request)\n", "10-event requests", small.requests, small.requests/(raw/500))
		fmt.Printf("ingest process memory: RSS %.0f MiB, peak %.0f MiB\n\n", rss, hwm)
	}
}

// rawAtomicRate publishes 500-message atomic batches of ~300 B for d to a
// stream configured like RETAIN_EVENTS and returns messages per second.
func rawAtomicRate(b *testing.B, url string, d time.Duration) float64 {
	ctx := context.Background()
	cfg := bus.EventsStreamConfig(bus.StreamOptions{})
	cfg.Name, cfg.Subjects = "RAWBENCH", []string{"rawbench.>"}
	bs := testenv.Bus(b, bus.Config{URL: url, Name: "bench-raw"}, cfg)
	payload := bytes.Repeat([]byte("x"), 300)
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		msgs := make([]bus.Message, 500)
		for i := range msgs {
			msgs[i] = bus.Message{Subject: "rawbench.shop.order.placed", ID: "raw-" + strconv.Itoa(n+i), Type: "order.placed", Data: payload}
		}
		if err := bs.PublishAtomic(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		n += len(msgs)
	}
	rate := float64(n) / time.Since(start).Seconds()
	if err := bs.JS.DeleteStream(ctx, cfg.Name); err != nil && err != jetstream.ErrStreamNotFound {
		b.Fatal(err)
	}
	return rate
}

func buildIngest(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "ingest")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/ingest")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("build ingest: %v", err)
	}
	return bin
}

type ingestProc struct {
	cmd      *exec.Cmd
	httpAddr string
	token    string
	seq      atomic.Int64
}

func freeAddr(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startIngest(b *testing.B, bin, natsURL, dbURL string) *ingestProc {
	keys := authtest.Keys(b)
	pub := keys.Public
	token, _ := keys.Signer.Issue(auth.Claims{Tenant: "bench", Scopes: []string{auth.ScopeEventsWrite}})
	p := &ingestProc{httpAddr: freeAddr(b), token: token}
	opsAddr := freeAddr(b)
	p.cmd = exec.Command(bin)
	p.cmd.Env = append(os.Environ(),
		"RETAIN_NATS_URL="+natsURL, "RETAIN_INGEST_DATABASE_URL="+dbURL, "RETAIN_AUTH_PUBLIC_KEY="+pub,
		"RETAIN_HTTP_ADDR="+p.httpAddr, "RETAIN_GRPC_ADDR="+freeAddr(b), "RETAIN_OPS_ADDR="+opsAddr, "RETAIN_LOG_LEVEL=warn")
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = p.cmd.Process.Signal(os.Interrupt)
		_ = p.cmd.Wait()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + opsAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("ingest did not become ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

type loadResult struct {
	name           string
	rate, requests float64
	p50, p99       time.Duration
}

// load runs clients concurrent clients sending perReq-event requests for d.
func (p *ingestProc) load(b *testing.B, clients, perReq int, d time.Duration) loadResult {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	var events atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	stop := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			buf := make([]byte, 0, perReq*400)
			for time.Now().Before(stop) {
				buf = p.body(buf[:0], perReq)
				req, _ := http.NewRequest(http.MethodPost, "http://"+p.httpAddr+"/v1/events", bytes.NewReader(buf))
				req.Header.Set("Authorization", "Bearer "+p.token)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				mine = append(mine, time.Since(t0))
				events.Add(int64(perReq))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	slices.Sort(lat)
	r := loadResult{name: fmt.Sprintf("ingest HTTP, %d clients x %d-event requests", clients, perReq), rate: float64(events.Load()) / el, requests: float64(len(lat)) / el}
	if len(lat) > 0 {
		r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return r
}

// body appends a request of n ~300 B order events with fresh ids.
func (p *ingestProc) body(buf []byte, n int) []byte {
	buf = append(buf, `{"events":[`...)
	for i := range n {
		id := p.seq.Add(1)
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = fmt.Appendf(buf, `{"id":"bench-%d","occurred_at":"2026-01-02T10:00:00Z","source":"bench","order_placed":{"customer_id":"c-%d","order_id":"o-%d","total":{"amount_minor":%d,"currency":"EUR"},"items":[{"sku":"SKU-%d","name":"Blue ceramic mug","quantity":2,"unit_price":{"amount_minor":1250,"currency":"EUR"}}]}}`, id, id%100000, id, 2500+id%1000, id%500)
	}
	return append(buf, `]}`...)
}

// memory returns the ingest process's resident and peak resident set in MiB.
func (p *ingestProc) memory(b *testing.B) (rss, hwm float64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = v / 1024
		case "VmHWM:":
			hwm = v / 1024
		}
	}
	return rss, hwm
}
