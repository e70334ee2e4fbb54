module github.com/retainhq/retain/services/churnsignal

go 1.26.0

require (
	github.com/retainhq/retain/platform v0.0.0
	github.com/retainhq/retain/proto/gen/go v0.0.0
	gonum.org/v1/gonum v0.17.0
)

require golang.org/x/tools v0.30.0 // indirect

replace (
	github.com/retainhq/retain/platform => ../../platform
	github.com/retainhq/retain/proto/gen/go => ../../proto/gen/go
)
