#!/usr/bin/env bash
# Installs what building and testing orbit needs beside the Rust toolchain, once:
# protoc (for the gRPC code), Debian's etcd-server and etcd-client (the anchor etcd and
# etcdctl that interoperability tests and benchmarks run against), and from PyPI
# Python's eth-account (the payments interoperability test signs with it) and
# prometheus-client (its parser reads the processes' /metrics in tests) and
# kubernetes-validate (the deployment manifests are checked against its schemas).
set -euo pipefail
need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need+=(etcd-client)
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}" >/dev/null
fi
py=()
python3 -c "import eth_account" >/dev/null 2>&1 || py+=(eth-account)
python3 -c "import prometheus_client.openmetrics.parser" >/dev/null 2>&1 || py+=(prometheus-client)
# A real SMTP server for the console's mail test.
python3 -c "import aiosmtpd" >/dev/null 2>&1 || py+=(aiosmtpd)
command -v kubernetes-validate >/dev/null 2>&1 || py+=(kubernetes-validate)
if [ ${#py[@]} -gt 0 ]; then
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "${py[@]}"
fi
