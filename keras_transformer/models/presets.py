"""Named configurations for `Transformer.from_preset`.

`base` and `big` are the paper's (Table 3): N layers, d_model, d_ff, h, P_drop.
"""

PRESETS = {
    "tiny": dict(num_layers=2, hidden_dim=64, num_heads=4, intermediate_dim=256, dropout=0.1),
    "small": dict(num_layers=3, hidden_dim=256, num_heads=4, intermediate_dim=1024, dropout=0.1),
    "base": dict(num_layers=6, hidden_dim=512, num_heads=8, intermediate_dim=2048, dropout=0.1),
    "big": dict(num_layers=6, hidden_dim=1024, num_heads=16, intermediate_dim=4096, dropout=0.3),
}


def preset_config(name):
    """The keyword arguments of preset `name` (a copy)."""
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Expected one of {sorted(PRESETS)}. Received: preset={name!r}")
    return dict(PRESETS[name])
