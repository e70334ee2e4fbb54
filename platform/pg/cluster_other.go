//go:build !unix

package pg

import (
	"context"
	"errors"
	"io"
)

// ClusterOptions configures a private PostgreSQL cluster (Unix only).
type ClusterOptions struct {
	Dir     string
	Port    int
	Durable bool
	Log     io.Writer
	BinDir  string

	InitCacheDir string
}

// Cluster is a private PostgreSQL server; not supported on this OS.
type Cluster struct{}

var errClusterUnsupported = errors.New("private PostgreSQL cluster is only supported on Unix; set a database URL instead")

// StartCluster is not supported on this OS.
func StartCluster(context.Context, ClusterOptions) (*Cluster, error) {
	return nil, errClusterUnsupported
}

// URL is the connection URL of database db.
func (c *Cluster) URL(db string) string { return "" }

// Port is the TCP port the server listens on.
func (c *Cluster) Port() int { return 0 }

// Dir is the cluster directory.
func (c *Cluster) Dir() string { return "" }

// LogPath is the file holding the server log.
func (c *Cluster) LogPath() string { return "" }

// CreateDatabase is not supported on this OS.
func (c *Cluster) CreateDatabase(context.Context, string) error { return errClusterUnsupported }

// Stop is not supported on this OS.
func (c *Cluster) Stop(context.Context) error { return errClusterUnsupported }
