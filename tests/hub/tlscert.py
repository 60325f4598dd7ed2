# SPDX-License-Identifier: MIT
"""Throwaway TLS material for tests, made with the openssl CLI: a CA and a
server certificate it signs for 127.0.0.1 and localhost (for hubstub.py
--tls-cert/--tls-key), and a second CA that signed nothing (a bundle that
trusts the wrong issuer). Keys are EC P-256, valid for 2 days.

Usage: tlscert.py DIR    writes DIR/ca.pem, DIR/server.pem, DIR/server.key,
                         DIR/other-ca.pem (DIR is created if missing)
Exits non-zero, saying why, if openssl is missing or fails.
"""
import os
import shutil
import subprocess
import sys


def openssl(*args, cwd):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        sys.exit("tlscert.py: openssl %s failed: %s" % (args[0], r.stderr.strip()))


def make(d):
    if not shutil.which("openssl"):
        sys.exit("tlscert.py: the openssl command is missing (Debian package openssl)")
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
                "-subj", "/CN=shoal test %s" % ca, "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    openssl("req", "-new", *ec, "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext",
            cwd=d)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    make(sys.argv[1])
