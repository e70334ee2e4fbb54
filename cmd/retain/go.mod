module github.com/retainhq/retain/cmd/retain

go 1.26.0

require (
	github.com/retainhq/retain/platform v0.0.0
	github.com/retainhq/retain/proto/gen/go v0.0.0
	github.com/retainhq/retain/services/ingest v0.0.0
)

replace (
	github.com/retainhq/retain/platform => ../../platform
	github.com/retainhq/retain/proto/gen/go => ../../proto/gen/go
	github.com/retainhq/retain/services/ingest => ../../services/ingest
)
