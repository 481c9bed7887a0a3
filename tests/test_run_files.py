"""Run directories and checkpoint files that no two processes share and no crash half-writes."""

import multiprocessing
import os
import signal
import subprocess
import sys

from betavae.lifecycle.atomic_files import replace_atomically
from betavae.lifecycle.checkpoints import remove_stale_staging_files
from betavae.lifecycle.layout import claim_new_directory


def test_processes_claiming_one_name_at_once_each_get_their_own_directory(tmp_path):
    wanted = tmp_path / "outputs" / "2026-11-21" / "19-46-56"
    # Spawned, each process imports only what claiming needs: they start close together.
    with multiprocessing.get_context("spawn").Pool(8) as pool:
        claimed = pool.map(claim_new_directory, [wanted] * 8)

    assert len(set(claimed)) == 8
    assert sorted(p.name for p in claimed) == ["19-46-56", *(f"19-46-56_{n}" for n in range(2, 9))]
    assert all(p.is_dir() and not any(p.iterdir()) for p in claimed)


# A process that replaces `path` and is killed half-way through writing the new version.
_KILLED_WHILE_WRITING = """
import os, signal, sys
from pathlib import Path
from betavae.lifecycle.atomic_files import replace_atomically

def write(file):
    file.write(b"new" * 1000)
    file.flush()
    os.kill(os.getpid(), signal.SIGKILL)

replace_atomically(Path(sys.argv[1]), write)
"""


def test_a_process_killed_while_writing_leaves_the_previous_file_whole(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    replace_atomically(checkpoint, lambda file: file.write(b"old"))
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_WHILE_WRITING, str(checkpoint)],
        env={**os.environ, "TMPDIR": str(scratch)},
    )

    assert killed.returncode == -signal.SIGKILL
    assert checkpoint.read_bytes() == b"old"
    (staging,) = [p for p in checkpoint.parent.iterdir() if p != checkpoint]
    assert staging.name.startswith(".last.ckpt.tmp-")
    assert not any(scratch.iterdir())  # nothing staged elsewhere
    remove_stale_staging_files(checkpoint.parent)
    assert list(checkpoint.parent.iterdir()) == [checkpoint]
