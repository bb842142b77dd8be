"""Per-round bulk data: samples, judgments and preference pairs."""

from __future__ import annotations

from collections.abc import Sequence
from types import EllipsisType
from typing import Any

from memory.base import StoreBase
from memory.common import SPLITS, to_json
from memory.records import Judgment, NewJudgment, NewPair, NewSample, Pair, RunPrompt, Sample


class DataMixin(StoreBase):
    # -- samples ---------------------------------------------------------------------------

    def add_samples(self, rows: Sequence[NewSample]) -> list[int]:
        """Insert samples in one transaction; returns their ids in input order."""
        for row in rows:
            self._check_value("split", row.split, SPLITS)
        return self._insert_many(
            "samples",
            (
                {
                    "run_id": r.run_id,
                    "round": r.round,
                    "split": r.split,
                    "prompt_id": r.prompt_id,
                    "prompt": r.prompt,
                    "family": r.family,
                    "checkpoint_id": r.checkpoint_id,
                    "response": r.response,
                    "n_tokens": r.n_tokens,
                    "sample_index": r.sample_index,
                    "served_by": r.served_by,
                }
                for r in rows
            ),
        )

    def samples(
        self,
        run_id: str,
        round: int | None,
        split: str | None = None,
        checkpoint_id: str | None | EllipsisType = ...,
    ) -> list[Sample]:
        """Samples of a round (all rounds if round is None), ordered by id.

        checkpoint_id: ``...`` (default) = any checkpoint, None = base model only, a string =
        that checkpoint only.
        """
        sql = "SELECT * FROM samples WHERE run_id = ?"
        params: list[Any] = [run_id]
        if round is not None:
            sql += " AND round = ?"
            params.append(round)
        if split is not None:
            self._check_value("split", split, SPLITS)
            sql += " AND split = ?"
            params.append(split)
        if checkpoint_id is None:
            sql += " AND checkpoint_id IS NULL"
        elif not isinstance(checkpoint_id, EllipsisType):
            sql += " AND checkpoint_id = ?"
            params.append(checkpoint_id)
        return [Sample.from_row(r) for r in self._rows(sql + " ORDER BY id", params)]

    def get_sample(self, sample_id: int) -> Sample | None:
        row = self._one("SELECT * FROM samples WHERE id = ?", (sample_id,))
        return None if row is None else Sample.from_row(row)

    def used_prompt_ids(self, run_id: str, before_round: int | None = None) -> list[str]:
        """Prompt ids a run sampled for training (before `before_round` if given), in first-use order."""
        sql = "SELECT prompt_id FROM samples WHERE run_id = ? AND split = 'train'"
        params: list[Any] = [run_id]
        if before_round is not None:
            sql += " AND round < ?"
            params.append(before_round)
        return [r["prompt_id"] for r in self._rows(sql + " GROUP BY prompt_id ORDER BY MIN(id)", params)]

    # -- judgments -------------------------------------------------------------------------

    def add_judgments(self, rows: Sequence[NewJudgment]) -> list[int]:
        """Insert judgments in one transaction; returns their ids in input order."""
        return self._insert_many(
            "judgments",
            (
                {
                    "sample_id": r.sample_id,
                    "judge": r.judge,
                    "score": None if r.score is None else float(r.score),
                    "valid": int(bool(r.valid)),
                    "raw": r.raw,
                    "details": to_json(r.details),
                }
                for r in rows
            ),
        )

    def judgments(
        self,
        run_id: str,
        round: int | None,
        judge: str | None = None,
        split: str | None = None,
    ) -> list[Judgment]:
        """Judgments of the samples of a round (all rounds if round is None), ordered by id."""
        sql = "SELECT j.* FROM judgments j JOIN samples s ON s.id = j.sample_id WHERE s.run_id = ?"
        params: list[Any] = [run_id]
        if round is not None:
            sql += " AND s.round = ?"
            params.append(round)
        if judge is not None:
            sql += " AND j.judge = ?"
            params.append(judge)
        if split is not None:
            self._check_value("split", split, SPLITS)
            sql += " AND s.split = ?"
            params.append(split)
        return [Judgment.from_row(r) for r in self._rows(sql + " ORDER BY j.id", params)]

    # -- pairs -----------------------------------------------------------------------------

    def add_pairs(self, rows: Sequence[NewPair]) -> list[int]:
        """Insert preference pairs in one transaction; returns their ids in input order."""
        return self._insert_many(
            "pairs",
            (
                {
                    "run_id": r.run_id,
                    "round": r.round,
                    "prompt_id": r.prompt_id,
                    "prompt": r.prompt,
                    "chosen_sample_id": r.chosen_sample_id,
                    "rejected_sample_id": r.rejected_sample_id,
                    "chosen": r.chosen,
                    "rejected": r.rejected,
                    "margin": float(r.margin),
                }
                for r in rows
            ),
        )

    def pairs(self, run_id: str, round: int | None) -> list[Pair]:
        """Pairs of a round (all rounds if round is None), ordered by id."""
        sql = "SELECT * FROM pairs WHERE run_id = ?"
        params: list[Any] = [run_id]
        if round is not None:
            sql += " AND round = ?"
            params.append(round)
        return [Pair.from_row(r) for r in self._rows(sql + " ORDER BY id", params)]

    # -- prompts a run made for itself -------------------------------------------------------

    def add_run_prompts(self, rows: Sequence[RunPrompt]) -> int:
        """Insert new prompts in one transaction; a prompt the run already has is kept as it was
        (ids are content hashes, so a re-run intervention node writes nothing twice). Returns how
        many were new."""
        now, added = self.now(), 0
        with self.transaction():
            for r in rows:
                added += self._exec(
                    "INSERT OR IGNORE INTO run_prompts (run_id, id, round, source, text, family, meta, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [r.run_id, r.id, r.round, r.source, r.text, r.family, to_json(r.meta), r.created_at or now],
                ).rowcount
        return added

    def run_prompts(self, run_id: str, source: str | None = None) -> list[RunPrompt]:
        """A run's own prompts in the order they were made."""
        sql = "SELECT * FROM run_prompts WHERE run_id = ?"
        params: list[Any] = [run_id]
        if source is not None:
            sql += " AND source = ?"
            params.append(source)
        return [RunPrompt.from_row(r) for r in self._rows(sql + " ORDER BY round, rowid", params)]
