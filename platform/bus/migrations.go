package bus

import (
	"embed"
	"io/fs"

	"github.com/retainhq/retain/platform/pg"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the bus tables (bus_inbox, bus_dead_letters,
// bus_outbox) in a service's database; run it with pg.Migrate next to the
// service's own set.
var Migrations = pg.MigrationSet{Component: "bus", FS: mustSub(migrationFiles, "migrations")}

// mustSub only fails if the embed pattern above and the directory name
// disagree, which the package's tests catch.
func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}
