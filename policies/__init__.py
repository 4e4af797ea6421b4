"""Built-in policies: a flat list of specs that reads as data (registered on first use)."""

from evalsuite.specs import PolicySpec

BUILTIN = [
    PolicySpec(
        id="scripted",
        entry_point="evalsuite_policies.metaworld_expert:scripted",
        description="the suite's scripted expert (Meta-World's own; evalsuite's for robomimic lift and can)",
    ),
    PolicySpec(
        id="noisy-scripted",
        entry_point="evalsuite_policies.metaworld_expert:noisy_scripted",
        description="the scripted expert with N(0, noise^2) added to each action component",
        params={"noise": 1.0},
    ),
    PolicySpec(
        id="random",
        entry_point="evalsuite_policies.random_policy:RandomPolicy",
        description="uniform random actions in [-1, 1]",
        params={"action_dim": 4},
    ),
    PolicySpec(
        id="mlp-bc",
        entry_point="evalsuite_policies.mlp_bc:load_policy",
        description="behavior-cloning MLP (torch) from a checkpoint folder written by policies.mlp_bc.save",
        params={"path": ""},
        positional="path",
    ),
    PolicySpec(
        id="robomimic",
        entry_point="evalsuite_policies.robomimic_policy:load_policy",
        description="a robomimic checkpoint (.pth) loaded with robomimic's own loader; executes the pickle",
        params={"path": ""},
        positional="path",
        pickled="path",
    ),
    PolicySpec(
        id="robomimic-bc",
        entry_point="evalsuite_policies.robomimic_policy:shipped_bc",
        description="robomimic BC trained here on scripted lift/can demos with robomimic's own training script",
    ),
    *[PolicySpec(
        id=family,
        entry_point=f"evalsuite_policies.chunked:{family}",
        description=description,
        params={"checkpoint": "", "steps": 0, "trust": False},
        positional="checkpoint",
        pickled="checkpoint*.ckpt",  # an official DP3/FlowPolicy/MP1 file; folders are safetensors
    ) for family, description in (
        ("dp3", "3D Diffusion Policy: diffusion over action chunks, DDIM (steps=10 network evaluations)"),
        ("flowpolicy", "FlowPolicy: consistency flow matching, one-step inference"),
        ("mp1", "MP1: MeanFlow with CFG target, adaptive loss and dispersive loss; one-step inference"),
        ("dm1", "DM1: MeanFlow with dispersive regularization (4 variants); 1-5 step inference"),
        ("ebt", "EBT-Policy: energy transformer, acting by the gradient descent on the chunk it was trained "
                "with until the gradient vanishes (steps = cap)"),
    )],
    PolicySpec(
        id="remote",
        entry_point="evalsuite_policies.remote:remote",
        description="a policy served over openpi's websocket protocol (any environment, any machine): "
                    "remote:ws://HOST:PORT[:n_action_steps=N:rename_map=OURS=THEIRS+...]",
        params={"url": "", "n_action_steps": 0, "rename_map": "", "timeout": 30.0, "instruction": ""},
        positional="url",
    ),
    PolicySpec(
        id="lbm",
        entry_point="evalsuite_policies.chunked:lbm",
        description="multitask language-conditioned diffusion transformer (LBM-style); the instruction is the task signal",
        params={"checkpoint": "", "steps": 0, "instruction": ""},
        positional="checkpoint",
    ),
    PolicySpec(
        id="gpc",
        entry_point="evalsuite_policies.gpc:gpc",
        description="GPC: members (family[@checkpoint] joined by +) mixed at every step of a shared schedule",
        params={"members": "", "w": 0.5, "weights": "", "steps": 10, "schedule": "auto", "mix": "velocity"},
    ),
    PolicySpec(
        id="lerobot",
        entry_point="evalsuite_policies.lerobot:lerobot",
        description="a LeRobot pretrained policy folder, run by LeRobot in its own environment (nox -s lerobot_env) "
                    "behind a policy server; no path: the ACT shipped for the Meta-World task",
        params={"path": "", "python": "", "device": "cpu", "threads": 1, "timeout": 30.0},
        positional="path",
    ),
]
