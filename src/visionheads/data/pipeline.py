"""From sample dicts to batches: each sample checked, augmented and made tensors; random draws seeded per epoch.

Randomness in training data (augmentation, fresh rotations) is a function of (seed, epoch, process, worker): the
epoch travels to DataLoader workers through a tensor in shared memory, so persistent workers follow it, a resumed
fit draws what the uninterrupted one drew, and two processes or workers never share a stream of draws.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, get_worker_info

from visionheads.data.samples import as_image, require_keys

ToTensors = Callable[[Any, dict[str, Any], str], dict[str, Any]]  # (pipeline, checked sample, where) -> tensors


class EpochClock:
    """The current training epoch and process rank, readable from DataLoader workers; reseeds shuffling per epoch."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._state = torch.zeros(2, dtype=torch.int64).share_memory_()  # (epoch, rank)
        self.generator = torch.Generator().manual_seed(seed)  # the shuffling of the main process

    def start(self, epoch: int, rank: int = 0) -> None:
        """Called as each training epoch starts, before its loader is iterated."""
        self._state[0], self._state[1] = epoch, rank
        self.generator.manual_seed(derived_seed(self.seed, epoch, rank))

    def read(self) -> tuple[int, int]:
        """(epoch, rank) as last started."""
        epoch, rank = self._state.tolist()
        return epoch, rank

    def __getstate__(self) -> dict[str, Any]:
        return {"seed": self.seed, "_state": self._state}  # workers need no generator

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.generator = torch.Generator().manual_seed(self.seed)


def derived_seed(*numbers: int) -> int:
    """A well-mixed 32-bit seed from several integers (numpy's SeedSequence)."""
    return int(np.random.SeedSequence([abs(int(n)) for n in numbers]).generate_state(1)[0])


def set_epoch(dataset: Any, epoch: int) -> None:
    """Tell every dataset in a chain of wrappers (Subset, views, Rotated...) that has `set_epoch` the epoch."""
    seen = set()
    while dataset is not None and id(dataset) not in seen:
        seen.add(id(dataset))
        if callable(getattr(dataset, "set_epoch", None)):
            dataset.set_epoch(epoch)
        dataset = getattr(dataset, "dataset", None)


class TransformedDataset(Dataset):
    """Samples of `dataset`, each checked (keys, image), through `pipeline`, to tensors; errors name the sample.

    With a `clock` (training), the pipeline and epoch-aware datasets are reseeded whenever a new epoch starts.
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        pipeline: Any,
        to_tensors: ToTensors,
        keys: tuple[str, ...],
        channels: int,
        description: str,
        clock: EpochClock | None = None,
    ) -> None:
        self.dataset = dataset
        self.pipeline = pipeline
        self.to_tensors = to_tensors
        self.keys = keys
        self.channels = channels
        self.description = description
        self.clock = clock
        self._following: tuple[int, int] | None = None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.clock is not None:
            self._follow(self.clock)
        where = f"{self.description}[{index}]"
        sample = dict(require_keys(self.dataset[index], self.keys, where))
        sample.setdefault("index", index)  # the sample's position, for tasks that need to name it (detection ids)
        sample["image"] = as_image(sample["image"], f"{where}['image']", channels=self.channels)
        return self.to_tensors(self.pipeline, sample, where)

    def _follow(self, clock: EpochClock) -> None:
        epoch, rank = clock.read()
        if self._following == (epoch, rank):
            return
        self._following = (epoch, rank)
        worker = get_worker_info()
        seed = derived_seed(clock.seed, epoch, rank, worker.id if worker is not None else 0)
        if hasattr(self.pipeline, "set_random_seed"):
            self.pipeline.set_random_seed(seed)
        set_epoch(self.dataset, epoch)


class TensorSamples(Dataset):
    """Samples `{key: tensors[key][i]}` of tensors that share their first dimension (e.g. cached features)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self._length = len(next(iter(tensors.values())))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[index] for key, value in self.tensors.items()}


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    collate_fn: Callable,
    seed: int,
    shuffle: torch.Generator | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    batch_sampler: Sampler | None = None,
) -> DataLoader:
    """Batches of `dataset`, shuffled by the generator `shuffle` when given (training).

    Iterating never draws from torch's global random state, and the order has a generator of its own: the
    DataLoader draws its workers' base seed from another one as each epoch's iterator is made, which Lightning
    does at different moments for a fresh and a resumed epoch. A `batch_sampler` (e.g. P x K batches) replaces
    batch_size, shuffle and drop_last.
    """
    if batch_sampler is not None:  # DataLoader takes a batch sampler only without its own batching arguments
        batching: dict[str, Any] = {"batch_sampler": batch_sampler}
    else:
        sampler = RandomSampler(dataset, generator=shuffle) if shuffle is not None else None
        batching = {"batch_size": batch_size, "sampler": sampler, "drop_last": drop_last}
    return DataLoader(
        dataset,
        **batching,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available(),
        persistent_workers=num_workers > 0,
    )
