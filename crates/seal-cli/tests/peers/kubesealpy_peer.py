"""An independent implementation of the sealing format for interop tests: kubesealpy (PyPI).

Usage (values on stdin, results on stdout):
  seal-value CERT SCOPE NAMESPACE NAME     plaintext -> base64 sealed value
  open-value KEY SCOPE NAMESPACE NAME      base64 sealed value -> base64 plaintext
  seal-manifest CERT SCOPE                 Secret YAML -> bitnami.com/v1alpha1 SealedSecret YAML
  unseal-manifest KEY                      bitnami.com/v1alpha1 SealedSecret YAML -> Secret YAML
"""

import base64
import sys

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from kubesealpy import SealedSecret, Secret, Sealer, SealingScope, Unsealer

SCOPES = {
    "strict": SealingScope.STRICT,
    "namespace-wide": SealingScope.NAMESPACE_WIDE,
    "cluster-wide": SealingScope.CLUSTER_WIDE,
}


def main(argv):
    command, args = argv[0], argv[1:]
    stdin = sys.stdin.buffer.read()
    if command == "seal-value":
        cert, scope, namespace, name = args
        sealer = Sealer.from_certificate_file(cert)
        sealed = sealer.seal_value(stdin, namespace=namespace, name=name, scope=SCOPES[scope])
        sys.stdout.write(base64.b64encode(sealed).decode())
    elif command == "open-value":
        key, scope, namespace, name = args
        unsealer = Unsealer([load_pem_private_key(open(key, "rb").read(), None)])
        plain = unsealer.unseal_value(base64.b64decode(stdin), namespace=namespace, name=name, scope=SCOPES[scope])
        sys.stdout.write(base64.b64encode(plain).decode())
    elif command == "seal-manifest":
        cert, scope = args
        sealer = Sealer.from_certificate_file(cert)
        sys.stdout.write(sealer.seal_secret(Secret.from_yaml(stdin.decode()), scope=SCOPES[scope]).to_yaml())
    elif command == "unseal-manifest":
        (key,) = args
        unsealer = Unsealer([load_pem_private_key(open(key, "rb").read(), None)])
        sys.stdout.write(unsealer.unseal(SealedSecret.from_yaml(stdin.decode())).to_yaml())
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main(sys.argv[1:])
