"""The one progress bar, for long evaluations and for training: rich, on stderr, so that
stdout stays the table; a disabled bar does nothing (and imports nothing)."""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``with ProgressBar(enabled, total) as bar:`` then ``bar.advance()`` or ``bar.update(n)``.

    ``completed`` starts the bar part-way (a resumed training run); ``info`` adds a column for
    a short status text (the last validation reward); a ``transient`` bar vanishes at the end.
    """

    def __init__(
        self,
        enabled: bool,
        total: int,
        label: str = "evaluating",
        completed: int = 0,
        info: bool = False,
        transient: bool = True,
    ) -> None:
        self.enabled = enabled
        self.total = total
        self.label = label
        self.completed = completed
        self.info = info
        self.transient = transient
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[str | ProgressColumn] = [
            TextColumn(self.label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ]
        if self.info:
            columns.append(TextColumn("{task.fields[info]}"))
        self._progress = Progress(*columns, console=Console(stderr=True), transient=self.transient)
        self._task = self._progress.add_task(
            self.label, total=self.total, completed=self.completed, info=""
        )
        self._progress.start()
        return self

    def advance(self) -> None:
        """One more unit done."""
        if self._progress is not None:
            self._progress.advance(self._task)

    def update(self, completed: int, info: str | None = None) -> None:
        """``completed`` units done so far, and a new status text when given."""
        if self._progress is None:
            return
        if info is None:
            self._progress.update(self._task, completed=completed)
        else:
            self._progress.update(self._task, completed=completed, info=info)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None  # later updates (training's final evaluation) do nothing
