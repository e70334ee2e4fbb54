package main

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestUsageErrors runs command lines that are wrong in themselves: a
// missing argument, an extra one, an unknown command, a bad flag value, a
// missing flag. Each exits 2, as the README promises, with a message that
// names what is wrong, and nothing is dialed: they are run where no
// `retain dev` left its state and no address or token is set, so a command
// that dialed first would fail with "no Retain to talk to" (exit 1).
func TestUsageErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	// An orders file with no currency column: it needs --currency.
	if err := os.WriteFile("orders.csv", []byte("order_id,customer_id,placed_at,total\no-1,c-1,2026-01-02T10:00:00Z,12.50\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		// Missing arguments and unknown commands.
		{[]string{"churn"}, "churn needs a command: list, model, refit, risk or weights"},
		{[]string{"churn", "bogus"}, `unknown churn command "bogus": want list, model, refit, risk or weights`},
		{[]string{"churn", "risk"}, "want exactly one CUSTOMER id, got 0 arguments"},
		{[]string{"playbooks"}, "playbooks needs a command: install or list"},
		{[]string{"playbooks", "bogus"}, `unknown playbooks command "bogus"`},
		{[]string{"deadletters", "bogus"}, `unknown deadletters command "bogus": want list or replay`},
		{[]string{"deadletters", "list"}, "deadletters list needs one CONSUMER, got 0 arguments"},
		{[]string{"deadletters", "replay", "metrics-facts"}, "deadletters replay needs a CONSUMER and at least one ID"},
		{[]string{"deadletters", "replay", "metrics-facts", "x"}, `dead letter ID "x": not a number`},
		{[]string{"import"}, "import needs a KIND and at least one FILE"},
		{[]string{"import", "bogus", "x.csv"}, `unknown KIND "bogus": want ndjson, orders`},
		{[]string{"publish"}, "publish needs at least one FILE"},
		{[]string{"tokens", "issue", "--tenant", "acme", "--scopes", "bogus"}, `--scopes: unknown scope "bogus"`},
		{[]string{"metrics", "bogus"}, `unknown figure "bogus"`},
		{[]string{"campaigns", "preview", "win-back", "--limit", "0"}, `invalid value "0" for flag -limit`},
		{[]string{"metrics", "retention", "--from", "garbage"}, `--from: "garbage": want`},
		{[]string{"tokens", "issue", "--tenant", "acme"}, "--scopes: at least one of"},
		{[]string{"tokens", "issue", "--scopes", "read"}, `--tenant: bad tenant id: "" does not match`},
		{[]string{"tokens", "issue", "--tenant", "Bad Tenant", "--scopes", "read"}, `--tenant: bad tenant id: "Bad Tenant"`},
		// Missing flags, and flags that do not fit the file.
		{[]string{"import", "orders", "orders.csv"}, "orders.csv: orders: the currency is required: give --currency"},
		{[]string{"import", "orders", "orders.csv", "--currency", "EUR", "--map", "total=Amount"}, `--map total=Amount: no column "Amount"`},
		{[]string{"import", "orders", "orders.csv", "--map", "total"}, `--map: "total" is not FIELD=COLUMN`},
		{[]string{"campaigns", "apply"}, "campaigns apply needs -f FILE"},
		{[]string{"templates", "apply"}, "templates apply needs -f FILE"},
		{[]string{"campaigns", "preview", "win-back", "-f", "c.yaml"}, "campaigns preview takes a campaign id or -f FILE, not both"},
		{[]string{"churn", "weights", "set"}, "churn weights set needs at least one of --outlook"},
		{[]string{"preferences", "set", "c-1"}, "preferences set needs at least one of --email-marketing"},
		// Bad flag values.
		{[]string{"churn", "list", "--band", "extreme"}, `invalid value "extreme" for flag -band: want high, medium, low or all`},
		{[]string{"churn", "list", "--limit", "0"}, `invalid value "0" for flag -limit: must be 1-10000`},
		{[]string{"churn", "risk", "c-1", "--as-of", "yesterday"}, `invalid value "yesterday" for flag -as-of`},
		{[]string{"churn", "refit", "--as-of", "yesterday"}, `invalid value "yesterday" for flag -as-of`},
		{[]string{"churn", "weights", "set", "--high-at", "9999999999"}, "--high-at 9999999999: out of range"},
		{[]string{"campaigns", "enrollments", "c-1", "--limit", "0"}, `invalid value "0" for flag -limit: must be 1-10000`},
		{[]string{"deliveries", "list", "--customer", "c-1", "--limit", "10001"}, `invalid value "10001" for flag -limit: must be 1-10000`},
		{[]string{"templates", "list", "--channel", "fax"}, `invalid value "fax" for flag -channel: want email, sms or webhook`},
		{[]string{"templates", "show", "winback_90", "--channel", "fax"}, `invalid value "fax" for flag -channel`},
		{[]string{"templates", "preview", "winback_90", "--channel", "fax"}, `invalid value "fax" for flag -channel`},
		{[]string{"simulate", "--customers", "-1"}, "--customers: customers must be in [1, "},
		{[]string{"simulate", "--days", "0"}, "--days: days must be in [1, "},
		{[]string{"simulate", "--rate-scale", "0"}, "--rate-scale: rate scale must be a positive number"},
		{[]string{"simulate", "--end", "2026-13-01"}, `invalid value "2026-13-01" for flag -end: want YYYY-MM-DD`},
		{[]string{"simulate", "--end", "1970-02-01", "--days", "365"}, "start year must be in [1970, 9000], got 1969"},
		// Extra arguments.
		{[]string{"playbooks", "list", "extra"}, `playbooks list takes no arguments, got ["extra"]`},
		{[]string{"campaigns", "list", "extra"}, `campaigns list takes no arguments, got ["extra"]`},
		{[]string{"campaigns", "apply", "c.yaml"}, `campaigns apply takes no arguments (the file goes after -f), got ["c.yaml"]`},
		{[]string{"templates", "list", "extra"}, `templates list takes no arguments, got ["extra"]`},
		{[]string{"deliveries", "list", "extra", "--customer", "c-1"}, `deliveries list takes no arguments, got ["extra"]`},
		{[]string{"churn", "list", "extra"}, `churn list takes no arguments, got ["extra"]`},
		{[]string{"churn", "weights", "extra"}, "did you mean `churn weights set`?"},
		{[]string{"deadletters", "list", "metrics-facts", "extra"}, "deadletters list needs one CONSUMER, got 2 arguments"},
		{[]string{"simulate", "x"}, `simulate takes no arguments (flags only), got ["x"]`},
	} {
		env, out, _ := testEnv(nil)
		err := run(context.Background(), env, tt.args)
		if code := exitCode(err); code != 2 || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("retain %s: %v (exit %d), want exit 2 and %q", strings.Join(tt.args, " "), err, code, tt.want)
		}
		if out.String() != "" {
			t.Errorf("retain %s wrote to stdout:\n%s", strings.Join(tt.args, " "), out)
		}
	}
}
