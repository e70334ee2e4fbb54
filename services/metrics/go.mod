module github.com/retainhq/retain/services/metrics

go 1.26.0

replace (
	github.com/retainhq/retain/platform => ../../platform
	github.com/retainhq/retain/proto/gen/go => ../../proto/gen/go
)
