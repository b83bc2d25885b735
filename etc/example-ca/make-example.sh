#!/bin/sh
# A worked delegation example with albatross-client (see README.md here):
#
#   operator   root CA "example-ca" + the TLS endpoint's server certificate
#   └─ acme    tenant sub-CA: 8 VMs, 2048 MB, CPUs 0-1, 4096 MB of block storage, bridge "service"
#      └─ web  acme's sub-tenant: 2 VMs, 512 MB, CPU 1, 1024 MB of block, bridge "service"
#
# Every party keeps its own key; only CSRs and certificates move between them.
#
#   make-example.sh [OUTDIR]        (default: ./example-ca-out; must not exist)
#
# Needs albatross-client in PATH (or ALBATROSS_CLIENT="python3 -m albatross_py.client.cli").
set -eu

out=${1:-./example-ca-out}
client=${ALBATROSS_CLIENT:-albatross-client}
if [ -e "$out" ]; then
  echo "make-example.sh: $out exists; give a new directory" >&2
  exit 1
fi
mkdir -p "$out/operator" "$out/acme" "$out/web"
out=$(cd "$out" && pwd)
run() { echo "+ (cd ${PWD#"$out"/}) $*"; "$@"; }

# 1. The operator: a root CA (10 years) and the server certificate (1 year).
#    cacert.pem, server.pem and server.key go to /etc/albatross on the host;
#    ca.key stays offline.  "db" records every serial issued.
cd "$out/operator"
run $client generate ca db

# 2. The tenant acme asks for a slice of the host: a CSR carrying the policy
#    (writes acme.key, which never leaves acme, and acme.req).
cd "$out/acme"
run $client add-policy acme 8 --mem 2048 --cpu 0 --cpu 1 --block 4096 --network service --csr

# 3. The operator checks the request and signs it (365 days by default):
#    acme.pem is acme's CA certificate, with the policy in its extension.
cd "$out/operator"
cp "$out/acme/acme.req" .
run $client sign cacert.pem db ca.key acme.req
cp acme.pem cacert.pem "$out/acme/"

# 4. acme delegates a smaller slice to its team "web".  sign refuses a policy
#    that is not within acme's own (more VMs, memory, CPUs or bridges).
cd "$out/web"
run $client add-policy web 2 --mem 512 --cpu 1 --block 1024 --network service --csr
cd "$out/acme"
cp "$out/web/web.req" .
: > acme.db
run $client sign acme.pem acme.db acme.key web.req --days 90
#    web.pem holds web's certificate and acme's: the whole chain below the root.
cp web.pem cacert.pem "$out/web/"

#    A request beyond acme's policy (16 VMs where acme has 8) is refused:
cd "$out/web"
run $client add-policy greedy 16 --mem 512 --cpu 1 --csr
cd "$out/acme"
cp "$out/web/greedy.req" .
if $client sign acme.pem acme.db acme.key greedy.req 2> greedy.err; then
  echo "make-example.sh: acme signed a policy larger than its own" >&2
  exit 1
fi
echo "  refused, as it should be: $(cat greedy.err)"
rm -f greedy.req greedy.err "$out/web/greedy.req" "$out/web/greedy.key"

# 5. web works from a laptop.  Every command signs a 5-minute leaf certificate
#    with web's key; the server derives the name acme:web:hello from the chain
#    and checks a create against both policies.  "-d -" prints the chain that
#    would be sent instead of connecting; with a server, -d albatross.example.org:
#      albatross-client create hello hello.hvt --mem 64 --cpu 1 --net service \
#        --ca web.pem --ca-key web.key --server-ca cacert.pem -d albatross.example.org
cd "$out/web"
run $client console hello --count 10 \
  --ca web.pem --ca-key web.key --server-ca cacert.pem -d - > hello-console-chain.pem
echo
echo "done: $out"
echo "  operator/  cacert.pem server.pem server.key -> /etc/albatross/ (server.key: 0640 root:albatross)"
echo "  acme/      acme.pem acme.key (acme's CA), cacert.pem"
echo "  web/       web.pem web.key, cacert.pem; hello-console-chain.pem (leaf + web + acme)"
