package pg

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DatabaseURL returns serverURL (postgres://user@host:port/anydb?params)
// pointing at database db instead, keeping user, host and parameters.
func DatabaseURL(serverURL, db string) (string, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// The URL may hold a password: never quote it.
		return "", errors.New("database URL must look like postgres://user@host:port/db (keyword=value strings are not supported)")
	}
	u.Path = "/" + db
	u.RawPath = ""
	return u.String(), nil
}

// CreateDatabaseAt creates database name on the server of serverURL unless it
// exists already, and returns the URL of the new database. The URL's user
// needs the CREATEDB privilege. Each service owns its own database; this is
// how `retain dev` gives them one on a shared server.
func CreateDatabaseAt(ctx context.Context, serverURL, name string) (string, error) {
	dbURL, err := DatabaseURL(serverURL, name)
	if err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	conn, err := pgx.Connect(ctx, serverURL)
	if err != nil {
		return "", fmt.Errorf("create database %s: connect: %w", name, err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if err := createDatabase(ctx, conn, name); err != nil {
		return "", err
	}
	return dbURL, nil
}

func createDatabase(ctx context.Context, conn *pgx.Conn, name string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		// Someone else created it between the check and here.
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "42P04" {
			return nil
		}
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}
