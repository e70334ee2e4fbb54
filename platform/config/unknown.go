package config

import (
	"flag"
	"slices"
	"strings"
)

// Retain's environment variables all start with EnvPrefix. A variable with
// the prefix that no setting of a process reads is most likely misspelt
// (RETAIN_INGEST_LINGR), and would otherwise be ignored without a word:
// UnknownEnv finds them so a process can warn at start-up, as Kafka logs
// "supplied but isn't a known config".
const EnvPrefix = "RETAIN_"

// readElsewhere are the RETAIN_* variables read outside any setting bound
// with this package: by the retain command (where calls go, the token, TLS
// to the API, the signing key, `retain dev`'s Postgres server). They are
// Retain's own, so a process that does not read them does not report them:
// a shell that runs the command and a service has them set for the command.
var readElsewhere = []string{
	"RETAIN_ADDR",
	"RETAIN_AUTH_PRIVATE_KEY",
	"RETAIN_DATABASE_URL",
	"RETAIN_TLS",
	"RETAIN_TLS_CA",
	"RETAIN_TLS_SERVER_NAME",
	"RETAIN_TOKEN",
}

// readElsewherePrefixes are families of variables read outside settings:
// the tests' (RETAIN_TEST_DATABASE_URL, RETAIN_TEST_PG_DURABLE) and the
// benchmarks' (RETAIN_BENCH_SECONDS, ...).
var readElsewherePrefixes = []string{"RETAIN_TEST_", "RETAIN_BENCH_"}

// ReadElsewhere reports whether name is a variable Retain reads outside
// the settings of its services (see readElsewhere).
func ReadElsewhere(name string) bool {
	if slices.Contains(readElsewhere, name) {
		return true
	}
	for _, p := range readElsewherePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// EnvNames returns the environment variables the settings bound in fs
// read, sorted.
func EnvNames(fs *flag.FlagSet) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if env := Env(f); env != "" {
			names = append(names, env)
		}
	})
	slices.Sort(names)
	return slices.Compact(names)
}

// Env returns the environment variable that feeds flag f; empty when f
// (nil included) was not bound with this package or has no variable. Tools
// that check deployments against a service's settings (the Helm chart's
// tests) read the binding here rather than from the usage text.
func Env(f *flag.Flag) string {
	if f == nil {
		return ""
	}
	if ev, ok := f.Value.(*envValue); ok {
		return ev.env
	}
	return ""
}

// UnknownVar is a RETAIN_* variable of the environment that no setting
// reads.
type UnknownVar struct {
	Name string
	// Suggestion is the known name it is most likely a misspelling of;
	// empty when none is close.
	Suggestion string
}

// UnknownEnv returns, sorted by name, the RETAIN_* variables of environ
// (KEY=VALUE entries, as os.Environ gives them) that are not in known and
// not read elsewhere by Retain (ReadElsewhere), each with the known name
// closest to it. Values are never looked at: they may be secrets.
func UnknownEnv(environ []string, known []string) []UnknownVar {
	isKnown := map[string]bool{}
	for _, k := range known {
		isKnown[k] = true
	}
	var unknown []UnknownVar
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, EnvPrefix) || isKnown[name] || seen[name] || ReadElsewhere(name) {
			continue
		}
		seen[name] = true
		unknown = append(unknown, UnknownVar{Name: name, Suggestion: Closest(name, known)})
	}
	slices.SortFunc(unknown, func(a, b UnknownVar) int { return strings.Compare(a.Name, b.Name) })
	return unknown
}

// Closest returns the name of known that name is most likely a
// misspelling of: the one fewest edits away (letters inserted, deleted,
// replaced or two neighbours swapped, ignoring case), if that is at most
// a third of the name after RETAIN_ (and at least 2); or else a known name
// that is name with a prefix left out (RETAIN_LINGER for
// RETAIN_INGEST_LINGER). Empty when nothing is that close.
func Closest(name string, known []string) string {
	upper := strings.ToUpper(name)
	rest := strings.TrimPrefix(upper, EnvPrefix)
	limit := max(2, len(rest)/3)
	best, bestDist := "", limit+1
	for _, k := range known {
		d := editDistance(upper, k)
		if d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return best
	}
	for _, k := range known {
		if strings.HasSuffix(k, "_"+rest) && (best == "" || len(k) < len(best) || (len(k) == len(best) && k < best)) {
			best = k
		}
	}
	return best
}

// editDistance is the optimal string alignment distance of a and b:
// insertions, deletions, substitutions and swaps of neighbours each cost 1.
func editDistance(a, b string) int {
	// Three rows of the table: two back (for swaps), previous, current.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
