"""The training step never waits for the GPU (issue 4: "no host syncs inside the step").

A CUDA step that reads a device value on the host (``int(t)``, ``bool(t)``,
``t.item()``, ``t.tolist()``, ``t.cpu()``, ``nonzero``) or copies host data
to the device without ``non_blocking`` stalls until every queued kernel has
run. These tests find such reads on the CPU: every parameter, buffer and
tensor moved with ``non_blocking=True`` (the Brain's device moves) counts as
a *device* tensor, and so does everything computed from one or created with
an explicit ``device=`` (through ``torch.arange``, ``torch.zeros`` and the
other factories in :data:`FACTORIES`). Reading one back, or a blocking move to the device,
is recorded with the source lines that did it. The optimizers are the fused
AdamW that a CUDA run gets, so the skip decisions stay on the device too.
On CUDA the alignment search is the Triton kernel (no host reads); the CPU
test run uses numba, whose host reads are left out.
"""

import collections
import tempfile
import traceback
import weakref
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.batch import PaddedBatch
from torch.utils._python_dispatch import TorchDispatchMode

from ddp_train_worker import build_brain, load_tiny_hparams, synthetic_items, write_corpus_yaml

ROOT = Path(__file__).resolve().parents[1]
FACTORIES = ("arange", "zeros", "ones", "full", "empty", "rand", "randn", "randint", "tensor", "as_tensor",
             "linspace")
READS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten._unique2", "aten.unique_consecutive",
         "aten.equal", "aten.bincount", "aten.histc"}


class TensorSet:
    """A set of tensors by identity, not holding them alive."""

    def __init__(self):
        self._refs = {}

    def add(self, tensor: torch.Tensor) -> None:
        self._refs[id(tensor)] = weakref.ref(tensor)

    def update(self, tensors) -> None:
        for tensor in tensors:
            self.add(tensor)

    def __contains__(self, tensor: torch.Tensor) -> bool:
        ref = self._refs.get(id(tensor))
        return ref is not None and ref() is tensor


class HostReadRecorder(TorchDispatchMode):
    """Record host reads of device tensors (see the module docstring)."""

    def __init__(self, *modules: torch.nn.Module, optimizers=()):
        super().__init__()
        self.device_tensors = TensorSet()
        for module in modules:
            self.device_tensors.update(module.parameters())
            self.device_tensors.update(module.buffers())
        for optimizer in optimizers:
            for state in optimizer.state.values():
                self.device_tensors.update(v for v in state.values() if torch.is_tensor(v))
        self.reads = collections.Counter()
        self._patched = {}

    def _on_device(self, value) -> bool:
        return torch.is_tensor(value) and value in self.device_tensors

    def record(self, what: str) -> None:
        stack = traceback.extract_stack()[:-2]
        if any(frame.name == "_run_cpu" for frame in stack):  # numba MAS: Triton on CUDA
            return
        ours = [f for f in stack if "/semtts/" in f.filename]
        self.reads[what + " at " + " < ".join(f"{Path(f.filename).name}:{f.lineno}" for f in ours[::-1][:3])] += 1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if torch.is_tensor(a)]
        on_device = any(self._on_device(a) for a in inputs)
        name = str(func.overloadpacket)
        if on_device and (name in READS or self._sizes_from_values(name, args, kwargs)):
            self.record(name)
        if name == "aten.copy_" and self._on_device(args[0]) and not self._on_device(args[1]) \
                and not (len(args) > 2 and args[2]):  # a blocking copy of host data into a device tensor
            self.record("blocking host-to-device copy_")
        out = func(*args, **kwargs)
        if on_device:
            self.device_tensors.update(t for t in torch.utils._pytree.tree_leaves(out) if torch.is_tensor(t))
        return out

    @staticmethod
    def _sizes_from_values(name: str, args, kwargs) -> bool:
        """Ops whose output size depends on device values (the host must read
        them): boolean-mask indexing, and repeat_interleave without output_size."""
        if name in ("aten.index", "aten.index_put", "aten.index_put_"):
            indices = args[1] if len(args) > 1 else []
            return any(torch.is_tensor(i) and i.dtype == torch.bool for i in indices if i is not None)
        return name == "aten.repeat_interleave" and kwargs.get("output_size") is None and torch.is_tensor(args[0])

    def __enter__(self):
        recorder = self
        original_to, original_tolist, original_numpy = torch.Tensor.to, torch.Tensor.tolist, torch.Tensor.numpy

        def to(tensor, *args, **kwargs):
            moves = any(isinstance(a, (str, torch.device)) or torch.is_tensor(a) for a in args) or "device" in kwargs
            if not moves:
                return original_to(tensor, *args, **kwargs)
            if kwargs.get("non_blocking") or (len(args) > 1 and args[-1] is True):
                out = original_to(tensor, *args, **kwargs)
                out = out.clone() if out is tensor else out  # a real copy, as on a GPU
                recorder.device_tensors.add(out)
                return out
            if not recorder._on_device(tensor):
                recorder.record("blocking host-to-device copy")
            return original_to(tensor, *args, **kwargs)

        def tolist(tensor):
            if recorder._on_device(tensor):
                recorder.record("tolist")
            return original_tolist(tensor)

        def numpy(tensor, *args, **kwargs):
            if recorder._on_device(tensor):
                recorder.record("numpy")
            return original_numpy(tensor, *args, **kwargs)

        def factory(original, copies_data: bool):
            def make(*args, **kwargs):
                out = original(*args, **kwargs)
                if kwargs.get("device") is not None:  # created on the device
                    if copies_data and not (args and torch.is_tensor(args[0])):
                        recorder.record("blocking host-to-device copy (torch.tensor data)")
                    recorder.device_tensors.add(out)
                return out
            return make

        def cuda(tensor, *args, **kwargs):
            if not recorder._on_device(tensor) and not kwargs.get("non_blocking"):
                recorder.record("blocking host-to-device copy (.cuda())")
            out = tensor.clone()
            recorder.device_tensors.add(out)
            return out

        self._patched = {(torch.Tensor, "to"): original_to, (torch.Tensor, "tolist"): original_tolist,
                         (torch.Tensor, "numpy"): original_numpy}
        self._patched.update({(torch, name): getattr(torch, name) for name in FACTORIES})
        self._patched[(torch.Tensor, "cuda")] = torch.Tensor.cuda
        torch.Tensor.to, torch.Tensor.tolist, torch.Tensor.numpy, torch.Tensor.cuda = to, tolist, numpy, cuda
        for name in FACTORIES:
            setattr(torch, name, factory(getattr(torch, name), copies_data=name in ("tensor", "as_tensor")))
        return super().__enter__()

    def __exit__(self, *exc):
        for (owner, name), original in self._patched.items():
            setattr(owner, name, original)
        return super().__exit__(*exc)


def fused_like_cuda(monkeypatch) -> None:
    """Build fused AdamW optimizers, let the gates skip on the device and run the kernel-1
    convolutions as matrix products, as on CUDA."""
    import semtts.brain
    import semtts.lobes.vits.pointwise
    import semtts.update_gate

    monkeypatch.setattr(semtts.lobes.vits.pointwise, "MATMUL_DEVICES", {"cpu", "cuda"})

    monkeypatch.setattr(semtts.brain, "build_optimizer",
                        lambda opt_class, module, device: opt_class(module.parameters(), fused=True))
    monkeypatch.setattr(semtts.update_gate, "supports_device_skip",
                        lambda opt: getattr(opt, "_step_supports_amp_scaling", False))


@pytest.mark.parametrize("precision,c_spk", [("fp32", 0.0), ("bf16", 0.0), ("fp32", 0.5)])
def test_stage_a_step_reads_nothing_back(tmp_path, monkeypatch, precision, c_spk):
    # c_spk > 0: with the CAM++ speaker-consistency term (random-init CAM++)
    fused_like_cuda(monkeypatch)
    torch.manual_seed(0)
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path), {"log_interval": 1000, "audio_log_interval": 1000,
                                                          "c_spk": c_spk})
    hp.update(campplus_ckpt=None, campplus_embed_dim=32, allow_random_init=True,
              campplus_cache_dir=str(tmp_path / "cache"))
    brain = build_brain(hp, {"device": "cpu", "noprogressbar": True, "precision": precision})
    assert (brain.speaker_loss is not None) == (c_spk > 0)
    items = synthetic_items(2, 8192, 5)
    reads = run_twice(brain, items)
    assert not reads, dict(reads)


def run_twice(brain, items: list[dict]) -> collections.Counter:
    """One warm-up step, then the host reads of a second one (fresh batches: the step moves them)."""
    brain.on_fit_start()
    assert brain.gate_g.deferred and brain.gate_d.deferred
    brain.fit_batch(PaddedBatch([dict(item) for item in items]))
    brain.settle_steps()
    recorder = HostReadRecorder(brain.modules.generator, brain.modules.discriminator,
                                optimizers=(brain.optimizer_g, brain.optimizer_d))
    with recorder:
        brain.fit_batch(PaddedBatch([dict(item) for item in items]))
    return recorder.reads


def test_speaker_vector_step_reads_nothing_back(tmp_path, monkeypatch):
    # speaker and utterance modes: CAM++ vectors instead of ids
    fused_like_cuda(monkeypatch)
    torch.manual_seed(0)
    hp = load_tiny_hparams(write_corpus_yaml(tmp_path), {"speaker_mode": "utterance", "spk_embed_dim": 4,
                                                          "log_interval": 1000, "audio_log_interval": 1000},
                           n_speakers=0)
    brain = build_brain(hp, {"device": "cpu", "noprogressbar": True})
    items = [{**item, "spk_embed": torch.randn(4)} for item in synthetic_items(2, 8192, 5)]
    reads = run_twice(brain, items)
    assert not reads, dict(reads)


@pytest.mark.parametrize("stage", ["B", "C"])
def test_semantic_step_reads_nothing_back(monkeypatch, stage):
    from semtts.brain import VITSBrain
    from semtts.lobes.vits.semantic_vits import SemanticVITS

    fused_like_cuda(monkeypatch)
    torch.manual_seed(0)
    hp = load_hyperpyyaml((ROOT / "hparams" / "model" / "vits_tiny.yaml").read_text(),
                          {"n_speakers": 2, "disc_periods": [2], "p_dropout": 0.0})
    hp.update(load_hyperpyyaml((ROOT / "hparams" / f"train_{stage}.yaml").read_text(),
                               {"output_folder": tempfile.mkdtemp(), "sempred_hidden": 16, "p_teacher_steps": 10,
                                "log_interval": 1000, "audio_log_interval": 1000}))
    generator = SemanticVITS(hp["generator"], 12, use_adapter=stage == "C", sempred_hidden=16)
    brain = VITSBrain({"generator": generator, "discriminator": hp["discriminator"]}, hparams=hp,
                      run_opts={"device": "cpu", "noprogressbar": True})
    items = [{"sig": torch.randn(8192) * 0.1, "token_ids": torch.arange(1, 9), "spk_id": i,
              "teacher": torch.randn(19 - 3 * i, 12)} for i in (0, 1)]
    reads = run_twice(brain, items)
    assert not reads, dict(reads)


def test_the_recorder_sees_a_host_read(monkeypatch):
    # the detector itself: a read of a parameter-derived value and a blocking move are caught
    net = torch.nn.Linear(2, 1)
    recorder = HostReadRecorder(net)
    with recorder:
        out = net(torch.ones(1, 2))
        float(out.sum().detach())
        torch.ones(2).to("cpu")
        torch.ones(2).to("cpu", non_blocking=True).tolist()
        weights = net.weight.detach().flatten()
        weights[weights > 0]  # boolean mask: the result's size is read back
        weights.repeat_interleave(weights.long().abs() + 1)  # repeats on the device
        weights.copy_(torch.ones(2))
        torch.tensor([1.0, 2.0], device="cpu")
    kinds = sorted(key.split(" at ")[0] for key in recorder.reads)
    assert kinds == ["aten._local_scalar_dense", "aten.index", "aten.repeat_interleave", "blocking host-to-device copy",
                     "blocking host-to-device copy (torch.tensor data)", "blocking host-to-device copy_",
                     "tolist"], kinds


def test_cuda_training_loads_batches_into_pinned_memory():
    # the non-blocking moves of a CUDA step are truly asynchronous from pinned memory
    from semtts.stages.train import loader_kwargs

    hp = {"num_workers": 0, "dynamic_batching": False, "batch_size": 2}
    for device, pinned in (("cuda", True), ("cuda:1", True), (torch.device("cuda", 0), True), ("cpu", False)):
        for train in (True, False):
            assert loader_kwargs(hp, None, train=train, device=device)["pin_memory"] is pinned
