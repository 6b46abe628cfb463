from __future__ import annotations

import os
import tempfile

# Set before ray.init(): the local cluster's workers inherit the driver's environment.
_home = tempfile.mkdtemp(prefix="er-rllib-home-")
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # else Ray writes a token under ~/.ray
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# As docs/rllib.md advises: let a killed runner's encoder process outlive it and finish its open
# episodes as .partial files (by default Ray kills a dead worker's child processes with it).
os.environ["RAY_kill_child_processes_on_worker_exit"] = "0"
os.environ["RAY_process_group_cleanup_enabled"] = "0"
os.environ["WANDB_DIR"] = os.path.join(_home, "wandb")
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
for name in ("XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
    os.environ[name] = os.path.join(_home, name.lower())
