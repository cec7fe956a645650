#!/bin/sh
# `pml-migrate certs`: a CA and node certificates that OpenSSL verifies for
# TLS server and client use, with the node name as subjectAltName; private
# keys 0600; nothing overwritten; a certificate from another CA fails.
. "$(dirname "$0")/tap.sh"
command -v openssl >/dev/null || skip_all "openssl command not installed"
echo "1..9"
"$PM" certs init "$T/pki" >/dev/null 2>"$T/err"; ok $? "certs init $(cat "$T/err")"
"$PM" certs issue "$T/pki" agent1 >/dev/null 2>"$T/err"; ok $? "certs issue agent1 $(cat "$T/err")"
"$PM" certs issue --days 30 "$T/pki" node-2 >/dev/null 2>"$T/err"; ok $? "certs issue --days 30 node-2"
openssl verify -CAfile "$T/pki/ca.pem" -purpose sslserver "$T/pki/agent1.pem" >/dev/null 2>&1 &&
	openssl verify -CAfile "$T/pki/ca.pem" -purpose sslclient "$T/pki/node-2.pem" >/dev/null 2>&1
ok $? "openssl verifies agent1 for server and node-2 for client auth"
openssl x509 -in "$T/pki/agent1.pem" -noout -ext subjectAltName 2>/dev/null | grep -q "DNS:agent1"
ok $? "agent1 carries DNS:agent1"
[ "$(stat -c %a "$T/pki/agent1.key")" = 600 ] && [ "$(stat -c %a "$T/pki/ca.key")" = 600 ]
ok $? "private keys are mode 0600"
before=$(md5sum "$T/pki/agent1.pem")
"$PM" certs issue "$T/pki" agent1 >/dev/null 2>"$T/err"
rc=$?
[ $rc = 1 ] && grep -q "File exists" "$T/err" && [ "$(md5sum "$T/pki/agent1.pem")" = "$before" ]
ok $? "issuing agent1 again refused, nothing overwritten (exit $rc)"
"$PM" certs init "$T/other" >/dev/null 2>&1 && "$PM" certs issue "$T/other" rogue >/dev/null 2>&1
openssl verify -CAfile "$T/pki/ca.pem" "$T/other/rogue.pem" >/dev/null 2>&1
[ $? != 0 ]; ok $? "a certificate from another CA does not verify"
"$PM" certs issue "$T/pki" "../x" >/dev/null 2>&1
[ $? = 2 ]; ok $? "bad node name is a usage error"
exit $fail
