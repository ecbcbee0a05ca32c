"""One of two processes reading mock tfds batches through ``ebm-jax train``'s data path
(``global_batches``), for ``test_many_processes.py``.

``python tfds_two_processes.py COORDINATOR PROCESS_ID OUT.npz`` writes, for steps 1-3, this
process's own rows and the global batch assembled from both processes' rows.
"""
import os
import sys
from types import SimpleNamespace

import numpy as np

sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tfds_mock

from ebm_jax.experiments import make_config  # noqa: E402
from ebm_jax.experiments.data import load_data  # noqa: E402
from ebm_jax.experiments.run import global_batches  # noqa: E402
from ebm_jax.parallel import gather_to_host, join, make_data_mesh, process_group  # noqa: E402
from tfds_mock import mocked  # noqa: E402

CONFIG = ("jem_cifar10", ["data.batch_size=8"])
STEPS = 3
FIRST_STEP = 1


def main(coordinator: str, process_id: int, out: str) -> None:
    join(process_group(coordinator, 2, process_id, environ={}), local_devices=2, timeout_s=60)
    with mocked(32):
        config = make_config(*CONFIG)
        data = load_data(config)
        run = SimpleNamespace(data=data, config=config)
        global_iter = global_batches(run, make_data_mesh(), FIRST_STEP)
        local_iter = data.train_batches(FIRST_STEP, process_id, 2)
        local, whole = [], []
        for _ in range(STEPS):
            local.append(np.asarray(next(local_iter)["x"]))
            whole.append(gather_to_host(next(global_iter))["x"])
    np.savez(out, local=np.stack(local), whole=np.stack(whole))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
