"""Nested configs as flat `{"dotted.key": value}` maps, so differences can be named by key."""


def flatten(node: object, prefix: str = "") -> dict[str, object]:
    """Leaves of nested dicts (e.g. `OmegaConf.to_container` output) under their dotted keys."""
    if not isinstance(node, dict):
        return {prefix.removesuffix("."): node}
    return {
        k: v for key, value in node.items() for k, v in flatten(value, f"{prefix}{key}.").items()
    }
