package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/retainhq/retain/platform/config"
)

// setting is one connection setting, by its variable and flag.
type setting struct{ env, flag string }

// String names the setting as configuration errors do.
func (s setting) String() string { return config.SettingName(s.env, s.flag) }

// The connection settings every service shares (RegisterFlags binds them).
var (
	settingURL          = setting{"RETAIN_NATS_URL", "nats-url"}
	settingCreds        = setting{"RETAIN_NATS_CREDS", "nats-creds"}
	settingNkey         = setting{"RETAIN_NATS_NKEY", "nats-nkey"}
	settingUser         = setting{"RETAIN_NATS_USER", "nats-user"}
	settingPassword     = setting{"RETAIN_NATS_PASSWORD", "nats-password"}
	settingPasswordFile = setting{"RETAIN_NATS_PASSWORD_FILE", "nats-password-file"}
	settingToken        = setting{"RETAIN_NATS_TOKEN", "nats-token"}
	settingTokenFile    = setting{"RETAIN_NATS_TOKEN_FILE", "nats-token-file"}
	settingTLSCA        = setting{"RETAIN_NATS_TLS_CA", "nats-tls-ca"}
	settingTLSCert      = setting{"RETAIN_NATS_TLS_CERT", "nats-tls-cert"}
	settingTLSKey       = setting{"RETAIN_NATS_TLS_KEY", "nats-tls-key"}
)

// settingFetchMaxBytes is the consumers' (RegisterConsumerFlags).
var settingFetchMaxBytes = setting{"RETAIN_NATS_FETCH_MAX_BYTES", "nats-fetch-max-bytes"}

// logins returns, for each way of logging in that is configured, the
// first of its settings that is set: more than one is a conflict.
func (c Config) logins() []setting {
	type field struct {
		s setting
		v string
	}
	var ways []setting
	for _, way := range [][]field{
		{{settingCreds, c.CredsFile}},
		{{settingNkey, c.NkeyFile}},
		{{settingUser, c.User}, {settingPassword, c.Password}, {settingPasswordFile, c.PasswordFile}},
		{{settingToken, c.Token}, {settingTokenFile, c.TokenFile}},
	} {
		for _, f := range way {
			if f.v != "" {
				ways = append(ways, f.s)
				break
			}
		}
	}
	return ways
}

// validateAuth checks the login settings: one way to log in, complete,
// with files that are readable and hold what the setting wants. Secrets
// are described by their length, never shown.
func (c Config) validateAuth(v *config.Validator) {
	ways := c.logins()
	if len(ways) > 1 {
		others := make([]string, len(ways)-1)
		for i, w := range ways[1:] {
			others[i] = w.String()
		}
		v.Addf(ways[0].String(), "set together with %s: log in one way only (a credentials file, an nkey seed, a user and password, or a token)", strings.Join(others, " and "))
	}
	if len(ways) > 0 && urlHasCredentials(c.URL) {
		// nats.go would silently prefer the URL's.
		v.Addf(settingURL.String(), "carries credentials, and %s is set too: give them in one place", ways[0])
	}

	if c.CredsFile != "" {
		if b, ok := readFile(v, settingCreds, c.CredsFile, true); ok {
			checkCreds(v, b)
		}
	}
	if c.NkeyFile != "" {
		if _, ok := readFile(v, settingNkey, c.NkeyFile, true); ok {
			// nats.go's own parser, so what passes here is what Connect uses.
			if _, err := nats.NkeyOptionFromSeed(c.NkeyFile); err != nil {
				v.Addf(settingNkey.String(), "%s is not an nkey user seed file: want the seed (SU...) that `nk -gen user` writes", config.FilePath(c.NkeyFile, true))
			}
		}
	}

	password := c.Password != "" || c.PasswordFile != ""
	switch {
	case c.User != "" && !password:
		v.Addf(settingUser.String(), "needs a password: set %s or %s", settingPassword, settingPasswordFile)
	case c.User == "" && password:
		s := settingPassword
		if c.Password == "" {
			s = settingPasswordFile
		}
		v.Addf(s.String(), "needs %s, the user the password is for", settingUser)
	}
	validateSecret(v, settingPassword, c.Password, settingPasswordFile, c.PasswordFile)
	validateSecret(v, settingToken, c.Token, settingTokenFile, c.TokenFile)
}

// validateSecret checks a secret given by its value (valueSetting) or by
// a file holding it (fileSetting), not both.
func validateSecret(v *config.Validator, valueSetting setting, value string, fileSetting setting, file string) {
	switch {
	case value != "" && file != "":
		v.Addf(fileSetting.String(), "set together with %s: give the secret one way", valueSetting)
	case value != "":
		checkSecret(v, valueSetting, value)
	case file != "":
		if b, ok := readFile(v, fileSetting, file, true); ok {
			s := trimNewline(string(b))
			if s == "" {
				v.Addf(fileSetting.String(), "%s is empty", config.FilePath(file, true))
			} else {
				checkSecret(v, fileSetting, s)
			}
		}
	}
}

// checkSecret refuses a line break in a password or token: a line break
// is most likely left over from the file a Secret was made from, and the
// server would refuse the login without saying why.
func checkSecret(v *config.Validator, s setting, secret string) {
	if strings.ContainsAny(secret, "\r\n") {
		v.Addf(s.String(), "holds a line break (a value of %d bytes, not shown): give the secret alone, on one line", len(secret))
	}
}

// checkCreds checks the credentials file's content with nats.go's own
// parser: a user JWT and an nkey seed that can sign.
func checkCreds(v *config.Validator, b []byte) {
	o := nats.GetDefaultOptions()
	if err := nats.UserCredentialBytes(b)(&o); err != nil {
		v.Addf(settingCreds.String(), "cannot be used: %v", err)
		return
	}
	const want = "want the user JWT and nkey seed that `nsc generate creds` writes"
	if _, err := o.UserJWT(); err != nil {
		v.Addf(settingCreds.String(), "is not a NATS credentials file, it holds no user JWT: %s", want)
		return
	}
	if _, err := o.SignatureCB([]byte("nonce")); err != nil {
		v.Addf(settingCreds.String(), "is not a NATS credentials file, it holds no nkey seed: %s", want)
	}
}

// validateTLS checks the TLS files: the CA holds certificates, and the
// client certificate comes with its key and matches it.
func (c Config) validateTLS(v *config.Validator) {
	if c.TLSCA != "" {
		if b, ok := readFile(v, settingTLSCA, c.TLSCA, false); ok && !x509.NewCertPool().AppendCertsFromPEM(b) {
			v.Addf(settingTLSCA.String(), "%q holds no PEM certificate: want the CA certificate(s) that signed the server's", c.TLSCA)
		}
	}
	switch {
	case c.TLSCert != "" && c.TLSKey == "":
		v.Addf(settingTLSCert.String(), "needs %s, the private key of the certificate", settingTLSKey)
	case c.TLSKey != "" && c.TLSCert == "":
		v.Addf(settingTLSKey.String(), "needs %s, the certificate of the key", settingTLSCert)
	case c.TLSCert != "":
		cert, certOK := readFile(v, settingTLSCert, c.TLSCert, false)
		key, keyOK := readFile(v, settingTLSKey, c.TLSKey, true)
		if certOK && keyOK {
			// The errors of crypto/tls describe the PEM blocks, never
			// their content.
			if _, err := tls.X509KeyPair(cert, key); err != nil {
				v.Addf(settingTLSCert.String(), "with %s: %v", settingTLSKey, err)
			}
		}
	}
}

// readFile reads the file a setting names, reporting why it cannot.
func readFile(v *config.Validator, s setting, path string, secret bool) ([]byte, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		v.Addf(s.String(), "%s", config.CannotRead(path, err, secret))
		return nil, false
	}
	return b, true
}

// trimNewline drops the line end editors and `echo` leave at the end of
// a file.
func trimNewline(s string) string {
	s = strings.TrimSuffix(s, "\n")
	return strings.TrimSuffix(s, "\r")
}

// urlHasCredentials reports whether a URL of the list carries a user,
// password or token.
func urlHasCredentials(list string) bool {
	for _, raw := range strings.Split(list, ",") {
		if raw = strings.TrimSpace(raw); raw != "" && redactOne(raw) != raw {
			return true
		}
	}
	return false
}

// connectOptions are the nats.go options of the login and TLS settings,
// which Validate has checked. nats.go reads the credentials, nkey and TLS
// files again at every reconnect, so a rotated Secret file is picked up
// then; the password and token files are read once, here.
func (c Config) connectOptions() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case c.CredsFile != "":
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	case c.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", settingNkey, err)
		}
		opts = append(opts, o)
	case c.User != "":
		password, err := secretValue(c.Password, settingPasswordFile, c.PasswordFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserInfo(c.User, password))
	case c.Token != "" || c.TokenFile != "":
		token, err := secretValue(c.Token, settingTokenFile, c.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(token))
	}
	if c.TLSCA != "" {
		opts = append(opts, nats.RootCAs(c.TLSCA))
	}
	if c.TLSCert != "" {
		opts = append(opts, nats.ClientCert(c.TLSCert, c.TLSKey))
	}
	return opts, nil
}

// secretValue is value, or else the content of file without its final
// line end.
func secretValue(value string, fileSetting setting, file string) (string, error) {
	if value != "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", fileSetting, err)
	}
	return trimNewline(string(b)), nil
}

// login describes how the connection logs in, for the log: the method
// and the user or file, never a secret.
func (c Config) login() string {
	switch {
	case c.CredsFile != "":
		return "credentials file " + c.CredsFile
	case c.NkeyFile != "":
		return "nkey seed file " + c.NkeyFile
	case c.User != "":
		return "user " + c.User
	case c.Token != "" || c.TokenFile != "":
		return "token"
	case urlHasCredentials(c.URL):
		return "credentials in the URL"
	default:
		return "none"
	}
}

// refusal explains an error of nats.Connect that no retry can get past:
// the server refused the login, or TLS cannot work with these settings.
// It names the settings to fix. Errors a retry may get past give nil: NATS
// not up yet, the network, and what the server's side fixes, such as an
// expired server certificate.
func (c Config) refusal(err error) error {
	var (
		unknownCA x509.UnknownAuthorityError
		host      x509.HostnameError
	)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		return fmt.Errorf("NATS refused the login (%v): %s", err, c.loginHint())
	case errors.Is(err, nats.ErrSecureConnWanted):
		return fmt.Errorf("NATS does not offer TLS, which %s asks for: enable TLS on the server, or leave those settings unset and use nats:// URLs", c.tlsSettings())
	case errors.As(err, &unknownCA):
		if c.TLSCA == "" {
			return fmt.Errorf("the NATS server's certificate is not from a CA the system trusts (%v): set %s to the CA certificate that signed it", err, settingTLSCA)
		}
		return fmt.Errorf("the NATS server's certificate is not signed by the CA of %s (%v): give the CA certificate that signed it", settingTLSCA, err)
	case errors.As(err, &host):
		return fmt.Errorf("the NATS server's certificate is not for the host connected to (%v): connect by a name it is for, in %s", err, settingURL)
	}
	return nil
}

// loginHint says which settings to check when NATS refuses the login.
func (c Config) loginHint() string {
	switch {
	case c.CredsFile != "":
		return fmt.Sprintf("check the credentials file of %s: its user may be unknown to the server's operator, expired or revoked", settingCreds)
	case c.NkeyFile != "":
		return fmt.Sprintf("check %s: the server must know the public key of its seed as a user", settingNkey)
	case c.User != "":
		password := settingPassword
		if c.Password == "" {
			password = settingPasswordFile
		}
		return fmt.Sprintf("check %s (%q) and %s against the server's users", settingUser, c.User, password)
	case c.Token != "":
		return fmt.Sprintf("check %s against the server's token", settingToken)
	case c.TokenFile != "":
		return fmt.Sprintf("check %s against the server's token", settingTokenFile)
	case urlHasCredentials(c.URL):
		return fmt.Sprintf("check the credentials in %s", settingURL)
	default:
		return fmt.Sprintf("the server requires a login and none is set: set %s, %s, %s with %s or %s, or %s or %s",
			settingCreds, settingNkey, settingUser, settingPassword, settingPasswordFile, settingToken, settingTokenFile)
	}
}

// tlsSettings names the TLS settings that are set, or the URL's tls://.
func (c Config) tlsSettings() string {
	var set []string
	for _, f := range []struct {
		s setting
		v string
	}{{settingTLSCA, c.TLSCA}, {settingTLSCert, c.TLSCert}, {settingTLSKey, c.TLSKey}} {
		if f.v != "" {
			set = append(set, f.s.String())
		}
	}
	if len(set) == 0 {
		return "a tls:// URL in " + settingURL.String()
	}
	return strings.Join(set, " and ")
}
