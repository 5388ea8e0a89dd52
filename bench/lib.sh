# Shared by the bench scripts (sourced, not run).

# sluice_routes PROXY_PORT BACKEND_PORT: the route set every HTTP bench
# gives sluice — a Gateway listening on PROXY_PORT whose one HTTPRoute
# sends every path to the backend on 127.0.0.1:BACKEND_PORT.
sluice_routes() {
  cat <<EOF
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: bench, namespace: bench}
spec:
  gatewayClassName: sluice
  listeners:
  - {name: http, protocol: HTTP, port: $1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: bench}
spec:
  parentRefs: [{name: bench}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: backend, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: backend-bench
  namespace: bench
  labels: {kubernetes.io/service-name: backend}
addressType: IPv4
ports: [{name: http, port: $2, protocol: TCP}]
endpoints: [{addresses: ["127.0.0.1"], conditions: {ready: true}}]
EOF
}
