"""``alicemind veco VERB`` (placeholder until the verbs land)."""


def register(subparsers) -> None:
    subparsers.add_parser("veco", help="VECO")
