module github.com/retainhq/retain/services/ingest

go 1.26.0

require (
	github.com/retainhq/retain/platform v0.0.0
	github.com/retainhq/retain/proto/gen/go v0.0.0
)

replace (
	github.com/retainhq/retain/platform => ../../platform
	github.com/retainhq/retain/proto/gen/go => ../../proto/gen/go
)
