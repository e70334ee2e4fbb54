package bus_test

import (
	"context"
	"crypto/tls"
	"flag"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"github.com/retainhq/retain/platform/bus"
	"github.com/retainhq/retain/platform/config"
	"github.com/retainhq/retain/platform/testenv"
)

// configFromEnv is the bus configuration a service reads from these
// RETAIN_* variables, through the flags RegisterFlags binds.
func configFromEnv(t *testing.T, env map[string]string) bus.Config {
	t.Helper()
	var c bus.Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	if err := config.Parse(fs, nil, lookup); err != nil {
		t.Fatalf("parse %v: %v", env, err)
	}
	return c
}

// startServer starts a nats-server (no JetStream: logging in does not
// need it) on 127.0.0.1, on a free port unless opts names one, and
// returns its host:port.
func startServer(t *testing.T, opts *server.Options) string {
	t.Helper()
	return runServer(t, opts).Addr().String()
}

func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host = "127.0.0.1"
	if opts.Port == 0 {
		opts.Port = server.RANDOM_PORT
	}
	opts.NoLog, opts.NoSigs = true, true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return srv
}

// tryConnect connects with cfg and returns the error (nil: connected, and
// closed again) and what was logged. A refused login or TLS setting must
// fail at once, not be retried until the context ends.
func tryConnect(t *testing.T, cfg bus.Config) (error, string) {
	t.Helper()
	var logs testenv.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Connect(ctx, cfg, log)
	if err == nil {
		b.Close()
		return nil, logs.String()
	}
	if ctx.Err() != nil || strings.Contains(logs.String(), "retrying") {
		t.Fatalf("Connect retried a refused connection: %v\n%s", err, logs.String())
	}
	return err, logs.String()
}

// writeFile writes content to a new file of the test and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// wantError checks that err names every one of want and shows none of
// the secrets, nor do the logs.
func wantError(t *testing.T, err error, logs string, want []string, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("connected, want an error naming %v", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error does not name %q: %v", w, err)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) || strings.Contains(logs, s) {
			t.Errorf("the secret %q is shown:\nerror: %v\nlogs:\n%s", s, err, logs)
		}
	}
}

// userSeed returns a new nkey user's public key and seed.
func userSeed(t *testing.T) (string, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	return pub, string(seed)
}

// TestConnectLogin: against servers that require a login, each way of
// logging in connects with the right credentials; with wrong or missing
// ones Connect stops at once with the server's refusal and the settings
// to check, never showing a secret.
func TestConnectLogin(t *testing.T) {
	const password, token = "s3cret-Passw0rd", "t0ken-s3cret"
	users := startServer(t, &server.Options{Users: []*server.User{{Username: "ingest", Password: password}}})
	tokens := startServer(t, &server.Options{Authorization: token})
	nkeyPub, nkeySeed := userSeed(t)
	_, otherSeed := userSeed(t)
	nkeyed := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: nkeyPub}}})
	operated, creds, strangerCreds := operatorServer(t)

	for _, tc := range []struct {
		name    string
		addr    string
		env     map[string]string
		want    []string // nil: connects
		secrets []string
	}{
		{name: "user and password", addr: users, env: map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD": password}},
		{name: "user and password file with a line end", addr: users,
			env: map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD_FILE": writeFile(t, "password", password+"\n")}},
		{name: "wrong password", addr: users, env: map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD": "wr0ng-s3cret"},
			want: []string{"refused the login", "Authorization Violation", "RETAIN_NATS_USER (-nats-user)", `"ingest"`, "RETAIN_NATS_PASSWORD (-nats-password)"}, secrets: []string{"wr0ng-s3cret"}},
		{name: "wrong password file", addr: users, env: map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD_FILE": writeFile(t, "password", "wr0ng-s3cret")},
			want: []string{"refused the login", "RETAIN_NATS_PASSWORD_FILE (-nats-password-file)"}, secrets: []string{"wr0ng-s3cret"}},
		{name: "no login", addr: users, env: map[string]string{},
			want: []string{"refused the login", "requires a login and none is set", "RETAIN_NATS_CREDS", "RETAIN_NATS_NKEY", "RETAIN_NATS_USER", "RETAIN_NATS_TOKEN"}},
		{name: "password in the URL", addr: users, env: map[string]string{"RETAIN_NATS_URL": "nats://ingest:" + password + "@" + users}},
		{name: "wrong password in the URL", addr: users, env: map[string]string{"RETAIN_NATS_URL": "nats://ingest:wr0ng-s3cret@" + users},
			want: []string{"refused the login", "credentials in RETAIN_NATS_URL"}, secrets: []string{"wr0ng-s3cret"}},
		{name: "token", addr: tokens, env: map[string]string{"RETAIN_NATS_TOKEN": token}},
		{name: "token file", addr: tokens, env: map[string]string{"RETAIN_NATS_TOKEN_FILE": writeFile(t, "token", token+"\r\n")}},
		{name: "wrong token", addr: tokens, env: map[string]string{"RETAIN_NATS_TOKEN": "wr0ng-t0ken"},
			want: []string{"refused the login", "RETAIN_NATS_TOKEN (-nats-token)"}, secrets: []string{"wr0ng-t0ken"}},
		{name: "nkey", addr: nkeyed, env: map[string]string{"RETAIN_NATS_NKEY": writeFile(t, "user.nk", nkeySeed+"\n")}},
		{name: "unknown nkey", addr: nkeyed, env: map[string]string{"RETAIN_NATS_NKEY": writeFile(t, "user.nk", otherSeed)},
			want: []string{"refused the login", "RETAIN_NATS_NKEY (-nats-nkey)"}, secrets: []string{otherSeed}},
		{name: "credentials file", addr: operated, env: map[string]string{"RETAIN_NATS_CREDS": writeFile(t, "user.creds", creds)}},
		{name: "credentials of an unknown account", addr: operated, env: map[string]string{"RETAIN_NATS_CREDS": writeFile(t, "user.creds", strangerCreds)},
			want: []string{"refused the login", "RETAIN_NATS_CREDS (-nats-creds)"}},
		{name: "no credentials file", addr: operated, env: map[string]string{},
			want: []string{"refused the login", "none is set", "RETAIN_NATS_CREDS"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.env["RETAIN_NATS_URL"]; !ok {
				tc.env["RETAIN_NATS_URL"] = "nats://" + tc.addr
			}
			cfg := configFromEnv(t, tc.env)
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err, logs := tryConnect(t, cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				for _, s := range []string{password, token, nkeySeed} {
					if strings.Contains(logs, s) {
						t.Errorf("log shows the secret %q:\n%s", s, logs)
					}
				}
				return
			}
			wantError(t, err, logs, tc.want, tc.secrets...)
		})
	}
}

// operatorServer starts a server in operator mode (decentralized JWT
// authentication, as nsc sets up) and returns its address, the
// credentials file of a user of its account, and those of a user of an
// account it does not know.
func operatorServer(t *testing.T) (addr, creds, strangerCreds string) {
	t.Helper()
	operator, _ := nkeys.CreateOperator()
	operatorPub, _ := operator.PublicKey()
	operatorJWT, err := jwt.NewOperatorClaims(operatorPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	operatorClaims, err := jwt.DecodeOperatorClaims(operatorJWT)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	userCreds := func(register bool) string {
		account, _ := nkeys.CreateAccount()
		accountPub, _ := account.PublicKey()
		accountJWT, err := jwt.NewAccountClaims(accountPub).Encode(operator)
		if err != nil {
			t.Fatal(err)
		}
		if register {
			if err := resolver.Store(accountPub, accountJWT); err != nil {
				t.Fatal(err)
			}
		}
		user, _ := nkeys.CreateUser()
		userPub, _ := user.PublicKey()
		userJWT, err := jwt.NewUserClaims(userPub).Encode(account)
		if err != nil {
			t.Fatal(err)
		}
		seed, _ := user.Seed()
		b, err := jwt.FormatUserConfig(userJWT, seed)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	creds, strangerCreds = userCreds(true), userCreds(false)
	addr = startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{operatorClaims}, AccountResolver: resolver})
	return addr, creds, strangerCreds
}

// TestConfigValidateLogin: every bad login and TLS setting is reported at
// once, by its variable and flag, with secrets described by their length.
func TestConfigValidateLogin(t *testing.T) {
	dir := t.TempDir()
	_, seed := userSeed(t)
	ca := testenv.NewCA(t)
	client, other := ca.Issue(t, "client"), ca.Issue(t, "other")
	certPEM, keyPEM, otherKeyPEM := string(client.CertPEM), string(client.KeyPEM), string(other.KeyPEM)
	file := func(name, content string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    []string
		secrets []string
	}{
		{
			name: "two ways to log in, and credentials in the URL",
			env: map[string]string{"RETAIN_NATS_URL": "nats://u:urlpw-s3cret@127.0.0.1:4222", "RETAIN_NATS_CREDS": file("a.creds", "x"),
				"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD": "s3cret"},
			want: []string{
				"RETAIN_NATS_CREDS (-nats-creds): set together with RETAIN_NATS_USER (-nats-user): log in one way only",
				"RETAIN_NATS_URL (-nats-url): carries credentials, and RETAIN_NATS_CREDS (-nats-creds) is set too",
				"RETAIN_NATS_CREDS (-nats-creds): is not a NATS credentials file",
			},
			secrets: []string{"urlpw-s3cret", "s3cret"},
		},
		{
			name: "a user without a password, a token given twice",
			env:  map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_TOKEN": "t0ken-s3cret", "RETAIN_NATS_TOKEN_FILE": file("token", "t0ken-s3cret")},
			want: []string{
				"RETAIN_NATS_USER (-nats-user): needs a password: set RETAIN_NATS_PASSWORD (-nats-password) or RETAIN_NATS_PASSWORD_FILE (-nats-password-file)",
				"RETAIN_NATS_TOKEN_FILE (-nats-token-file): set together with RETAIN_NATS_TOKEN (-nats-token): give the secret one way",
			},
			secrets: []string{"t0ken-s3cret"},
		},
		{
			name:    "a password without a user, with a line break",
			env:     map[string]string{"RETAIN_NATS_PASSWORD": "s3cret\n"},
			want:    []string{"RETAIN_NATS_PASSWORD (-nats-password): needs RETAIN_NATS_USER (-nats-user)", "RETAIN_NATS_PASSWORD (-nats-password): holds a line break (a value of 7 bytes, not shown)"},
			secrets: []string{"s3cret"},
		},
		{
			name: "missing and empty files, and a secret where its file was wanted",
			env: map[string]string{"RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD_FILE": file("empty", "\n"),
				"RETAIN_NATS_NKEY": seed, "RETAIN_NATS_TLS_CA": filepath.Join(dir, "missing-ca.pem")},
			want: []string{
				`RETAIN_NATS_PASSWORD_FILE (-nats-password-file): "` + filepath.Join(dir, "empty") + `" is empty`,
				"RETAIN_NATS_NKEY (-nats-nkey): cannot read the file its value names (58 bytes, not shown",
				`RETAIN_NATS_TLS_CA (-nats-tls-ca): cannot read "` + filepath.Join(dir, "missing-ca.pem") + `": no such file or directory`,
			},
			secrets: []string{seed},
		},
		{
			name: "not an nkey seed, not a CA, a certificate without its key",
			env:  map[string]string{"RETAIN_NATS_NKEY": file("creds-not-seed", "hello"), "RETAIN_NATS_TLS_CA": file("ca.pem", "not pem"), "RETAIN_NATS_TLS_CERT": file("cert.pem", certPEM)},
			want: []string{
				"RETAIN_NATS_NKEY (-nats-nkey): \"" + filepath.Join(dir, "creds-not-seed") + "\" is not an nkey user seed file",
				"RETAIN_NATS_TLS_CA (-nats-tls-ca): \"" + filepath.Join(dir, "ca.pem") + "\" holds no PEM certificate",
				"RETAIN_NATS_TLS_CERT (-nats-tls-cert): needs RETAIN_NATS_TLS_KEY (-nats-tls-key)",
			},
		},
		{
			name: "a key that is not the certificate's",
			env:  map[string]string{"RETAIN_NATS_TLS_CERT": file("c.pem", certPEM), "RETAIN_NATS_TLS_KEY": file("k.pem", otherKeyPEM)},
			want: []string{"RETAIN_NATS_TLS_CERT (-nats-tls-cert): with RETAIN_NATS_TLS_KEY (-nats-tls-key): tls: private key does not match public key"},
		},
		{
			name:    "the key given where its file goes",
			env:     map[string]string{"RETAIN_NATS_TLS_CERT": file("c3.pem", certPEM), "RETAIN_NATS_TLS_KEY": "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG/yqGSM49+gEGCCqG\n-----END PRIVATE KEY-----"},
			want:    []string{"RETAIN_NATS_TLS_KEY (-nats-tls-key): cannot read the file its value names (82 bytes, not shown"},
			secrets: []string{"MIGHAgEAMBMG/yqGSM49+gEGCCqG"},
		},
		{
			name: "a key without its certificate",
			env:  map[string]string{"RETAIN_NATS_TLS_KEY": file("k2.pem", keyPEM)},
			want: []string{"RETAIN_NATS_TLS_KEY (-nats-tls-key): needs RETAIN_NATS_TLS_CERT (-nats-tls-cert)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := configFromEnv(t, tc.env).Validate()
			if err == nil {
				t.Fatal("Validate = nil, want problems")
			}
			problems := config.Settings(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
			if len(problems) == 0 {
				t.Errorf("no problem names its setting: %v", err)
			}
			for _, s := range tc.secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error shows the secret %q:\n%v", s, err)
				}
			}
		})
	}

	valid := map[string]string{"RETAIN_NATS_TLS_CA": ca.File, "RETAIN_NATS_TLS_CERT": file("good.pem", certPEM),
		"RETAIN_NATS_TLS_KEY": file("good.key", keyPEM), "RETAIN_NATS_NKEY": file("good.nk", seed)}
	if err := configFromEnv(t, valid).Validate(); err != nil {
		t.Errorf("Validate(%v) = %v, want nil", valid, err)
	}
}

// TestConnectTLS: a server with a certificate from the test's own CA is
// reached with RETAIN_NATS_TLS_CA (by a tls:// URL or a nats:// one: the
// client follows a server that requires TLS), and without it Connect
// stops at once, naming the setting. A server that verifies clients takes the client
// certificate of RETAIN_NATS_TLS_CERT and _KEY, and without it Connect
// names those.
func TestConnectTLS(t *testing.T) {
	ca := testenv.NewCA(t)
	serverCert, clientCert := ca.Issue(t, "nats", "127.0.0.1"), ca.Issue(t, "retain-ingest")
	pair, err := tls.X509KeyPair(serverCert.CertPEM, serverCert.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := ca.Pool()
	tlsServer := startServer(t, &server.Options{TLS: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}})
	mutualServer := startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSTimeout: 2,
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}})
	plainServer := startServer(t, &server.Options{})
	caFile, otherCA := ca.File, testenv.NewCA(t).File
	client := map[string]string{"RETAIN_NATS_TLS_CERT": writeFile(t, "client.pem", string(clientCert.CertPEM)), "RETAIN_NATS_TLS_KEY": writeFile(t, "client.key", string(clientCert.KeyPEM))}

	for _, tc := range []struct {
		name string
		url  string
		env  map[string]string
		want []string // nil: connects over TLS
	}{
		{name: "tls URL and the CA", url: "tls://" + tlsServer, env: map[string]string{"RETAIN_NATS_TLS_CA": caFile}},
		{name: "nats URL and the CA", url: "nats://" + tlsServer, env: map[string]string{"RETAIN_NATS_TLS_CA": caFile}},
		{name: "tls URL without the CA", url: "tls://" + tlsServer, env: map[string]string{},
			want: []string{"not from a CA the system trusts", "certificate signed by unknown authority", "set RETAIN_NATS_TLS_CA (-nats-tls-ca)"}},
		{name: "nats URL without the CA", url: "nats://" + tlsServer, env: map[string]string{},
			want: []string{"not from a CA the system trusts", "set RETAIN_NATS_TLS_CA (-nats-tls-ca)"}},
		{name: "another CA", url: "tls://" + tlsServer, env: map[string]string{"RETAIN_NATS_TLS_CA": otherCA},
			want: []string{"not signed by the CA of RETAIN_NATS_TLS_CA (-nats-tls-ca)"}},
		{name: "a name the certificate is not for", url: "tls://localhost:" + port(t, tlsServer), env: map[string]string{"RETAIN_NATS_TLS_CA": caFile},
			want: []string{"not for the host connected to", "RETAIN_NATS_URL (-nats-url)"}},
		{name: "client certificate", url: "tls://" + mutualServer, env: with(client, "RETAIN_NATS_TLS_CA", caFile)},
		{name: "a server without TLS", url: "nats://" + plainServer, env: map[string]string{"RETAIN_NATS_TLS_CA": caFile},
			want: []string{"does not offer TLS", "RETAIN_NATS_TLS_CA (-nats-tls-ca)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := configFromEnv(t, with(tc.env, "RETAIN_NATS_URL", tc.url))
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			err, logs := tryConnect(t, cfg)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Connect: %v", err)
				}
				if !strings.Contains(logs, "tls=true") {
					t.Errorf("the connected log line does not say tls=true:\n%s", logs)
				}
				return
			}
			wantError(t, err, logs, tc.want)
		})
	}
}

// with returns a copy of env with k set to v.
func with(env map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for k, v := range env {
		out[k] = v
	}
	return out
}

func port(t *testing.T, addr string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// refuseAll is a server's authentication that counts logins and refuses
// every one.
type refuseAll struct{ attempts atomic.Int64 }

func (r *refuseAll) Check(server.ClientAuthentication) bool {
	r.attempts.Add(1)
	return false
}

// TestReconnectAfterRefusedLogins: a connected service whose login the
// server refuses on reconnecting (its users being changed) keeps trying,
// and is connected again once the server takes its login, instead of
// giving up for good after the second refusal as nats.go does by default.
func TestReconnectAfterRefusedLogins(t *testing.T) {
	const password = "s3cret-Passw0rd"
	users := func(port int) *server.Options {
		return &server.Options{Port: port, Users: []*server.User{{Username: "ingest", Password: password}}}
	}
	first := runServer(t, users(0))
	addr := first.Addr().(*net.TCPAddr)
	cfg := configFromEnv(t, map[string]string{"RETAIN_NATS_URL": "nats://" + addr.String(), "RETAIN_NATS_USER": "ingest", "RETAIN_NATS_PASSWORD": password})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var logs testenv.SyncBuffer
	b, err := bus.Connect(ctx, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()

	first.Shutdown()
	first.WaitForShutdown()
	refuse := &refuseAll{}
	refusing := runServer(t, &server.Options{Port: addr.Port, CustomClientAuthentication: refuse})
	testenv.WaitFor(t, "five refused logins", func() bool { return refuse.attempts.Load() >= 5 || b.NC.IsClosed() })
	if b.NC.IsClosed() {
		t.Fatalf("the connection gave up after %d refused logins", refuse.attempts.Load())
	}
	refusing.Shutdown()
	refusing.WaitForShutdown()
	runServer(t, users(addr.Port))
	testenv.WaitFor(t, "reconnected", b.NC.IsConnected)
	// The refusals are logged once, and counted when the login is taken
	// again, not a line an attempt.
	logs.WaitFor(t, "nats reconnected")
	out := logs.String()
	if n := strings.Count(out, "nats async error"); n != 1 || !strings.Contains(out, "authorization violation") {
		t.Errorf("%d async error lines for %d refused logins, want 1 naming the violation:\n%s", n, refuse.attempts.Load(), out)
	}
	if !regexp.MustCompile(`nats reconnected.* async_errors_not_logged=[1-9]`).MatchString(out) {
		t.Errorf("the reconnect does not count the refusals not logged:\n%s", out)
	}
}
