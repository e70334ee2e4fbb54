package notifier

import "testing"

func TestLoopbackURL(t *testing.T) {
	for u, want := range map[string]bool{
		"http://127.0.0.1:8080":           true,
		"http://localhost:8081/":          true,
		"http://[::1]:8080":               true,
		"https://links.shop.example":      false,
		"http://10.0.0.5:8080":            false,
		"https://retain.example.com:8443": false,
	} {
		if got := loopbackURL(u); got != want {
			t.Errorf("loopbackURL(%q) = %v, want %v", u, got, want)
		}
	}
}
