package bus

import (
	"embed"

	"github.com/retainhq/retain/platform/pg"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations creates the bus tables (bus_inbox, bus_dead_letters,
// bus_outbox) in a service's database; run it with pg.Migrate next to the
// service's own set.
var Migrations = pg.MigrationSet{Component: "bus", FS: migrationFiles, Dir: "migrations"}
