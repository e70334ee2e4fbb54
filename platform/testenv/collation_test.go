package testenv_test

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/retainhq/retain/platform/pg"
	"github.com/retainhq/retain/platform/testenv"
)

func collationSet(sql ...string) pg.MigrationSet {
	fs := fstest.MapFS{}
	for i, s := range sql {
		fs[[]string{"0001_things.sql", "0002_more.sql"}[i]] = &fstest.MapFile{Data: []byte(s)}
	}
	return pg.MigrationSet{Component: "things", FS: fs}
}

const things = `CREATE TABLE things (
    tenant text COLLATE "C" NOT NULL,
    id     text COLLATE "C" NOT NULL,
    label  text             NOT NULL,
    note   varchar(10)      NOT NULL,
    n      integer          NOT NULL,
    PRIMARY KEY (tenant, id)
);
CREATE INDEX things_n ON things (n);`

// TestKeyColumnsNotC: the check sees every way an index reads a text
// column, and nothing else.
func TestKeyColumnsNotC(t *testing.T) {
	if got := testenv.KeyColumnsNotC(t, collationSet(things)); len(got) != 0 {
		t.Errorf("keys and unindexed columns: got %q, want nothing", got)
	}
	got := testenv.KeyColumnsNotC(t, collationSet(things, `
CREATE INDEX things_label ON things (tenant, label);
CREATE INDEX things_cover ON things (n) INCLUDE (note);
CREATE INDEX things_open ON things (n) WHERE note <> '';
CREATE INDEX things_expr ON things ((id COLLATE "POSIX"));
CREATE INDEX things_upper ON things (upper(id));
CREATE INDEX things_lower ON things (lower(label));
ALTER TABLE things ADD UNIQUE (tenant, n, label);`))
	want := []string{
		`things.index column 1 (index things_expr) has collation "POSIX"`,
		`things.index column 1 (index things_lower) has collation "default"`,
		`things.label (index things_label) has collation "default"`,
		`things.label (index things_lower) has collation "default"`,
		`things.label (index things_tenant_n_label_key) has collation "default"`,
		`things.note (index things_cover) has collation "default"`,
		`things.note (index things_open) has collation "default"`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
