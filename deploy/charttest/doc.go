// Package charttest checks the deployment artefacts offline: it renders the
// Helm chart in charts/retain with the Helm SDK for each values file and
// strictly decodes every manifest into the Kubernetes API types (an unknown
// field fails), checks the security context, probes, labels and wiring of
// every workload, checks that the values schema rejects typos with a clear
// message, and checks that deploy/docker-compose.yml, its .env.example and
// the NATS configuration agree with the chart and with the variables each
// service really reads. The tests are the package; nothing here is imported.
package charttest
