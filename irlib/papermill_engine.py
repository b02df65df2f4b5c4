"""Papermill's nbclient engine, saving the running notebook at most once a second.

Papermill writes the whole notebook (about 120 KB of indented JSON for a runbook) when each cell
starts and again when it completes: 43 writes for a runbook of ten code cells, 0.07 s of a warm
run's 0.5 s. This engine (`execute_notebook(engine_name=NAME)`) writes when at least
SAVE_EVERY_S have passed since its last write, and always at the end: papermill ends every
execution with a save, in a `finally`, so a cell that raised, timed out or lost its kernel
leaves the notebook as it was then, as before. The writes in between only matter if this
process itself is killed; it then loses at most SAVE_EVERY_S of outputs (and the run has no
archive in any case). Used by irlib.runner; talks to papermill only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from papermill.engines import NBClientEngine, NotebookExecutionManager, papermill_engines

NAME = "irlib"
SAVE_EVERY_S = 1.0


class _Manager(NotebookExecutionManager):  # type: ignore[misc]
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_save_time = datetime.min.replace(tzinfo=UTC)  # the first save is written

    def save(self, **kwargs: Any) -> None:
        if kwargs.get("nb") is not None:  # as papermill's own save: a replaced notebook
            self.nb = kwargs["nb"]
        final = self.end_time is not None  # set by notebook_complete, just before its save
        if final or (self.now() - self.last_save_time).total_seconds() >= SAVE_EVERY_S:
            super().save()


class Engine(NBClientEngine):  # type: ignore[misc]
    @classmethod
    def execute_notebook(
        cls,
        nb: Any,
        kernel_name: str,
        output_path: str | None = None,
        progress_bar: bool = True,
        log_output: bool = False,
        autosave_cell_every: int = 30,
        **kwargs: Any,
    ) -> Any:
        # papermill's Engine.execute_notebook, with this module's manager
        nb_man = _Manager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(NAME, Engine)

__all__ = ["NAME", "SAVE_EVERY_S", "Engine"]
