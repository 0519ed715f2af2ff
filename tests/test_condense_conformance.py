"""Every registered condenser, ours or a third party's, meets the same bar on `toy` at IPC 2:
shapes, labels, determinism; and every checkpointing one resumes to the same result."""
import pytest
import torch

from kddbench.condense import CondenseRequest, SyntheticSet
from kddbench.context import Checkpoint, RunContext
from kddbench.errors import KddbenchError
from kddbench.plugins import get_registry
from kddbench.protocol import make_generator
from kddbench.store import ArtifactCache

IPC = 2
# the smallest settings of options a method may have (applied where the method has them)
SMALL = {"iterations": 2, "epochs": 1, "outer_loop": 2, "inner_loop": 1, "batch_real": 8,
         "batch_train": 8, "train_epochs": 0, "checkpoint_every": 0}
CONDENSERS = get_registry().names("condenser")


def small_options(spec, **extra):
    opts = {k: v for k, v in SMALL.items() if k in spec.options}
    opts.update(extra)
    return opts


def make_request(seed=0, checkpoint=None, log=None):
    ctx = RunContext(registry=get_registry())
    data = ctx.data("toy")
    kwargs = {"log": log} if log is not None else {}
    return CondenseRequest(
        data=data, ipc=IPC, arch="convnet",
        build_net=lambda s: ctx.build_net("convnet", data, s, options={"depth": 2, "width": 8}),
        generator=make_generator(seed), device=ctx.device, checkpoint=checkpoint, seed=seed,
        augment=lambda name: ctx.augment(name, data), **kwargs)


def condense(name, seed=0, checkpoint=None, log=None, **extra) -> SyntheticSet:
    spec = get_registry().get("condenser", name)
    request = make_request(seed, checkpoint, log)
    return spec.load()(request, **small_options(spec, **extra))


@pytest.mark.parametrize("name", CONDENSERS)
def test_condenser_conforms(name):
    spec = get_registry().get("condenser", name)
    assert spec.version and spec.description
    request = make_request()
    data = request.data
    try:
        syn = condense(name)
    except KddbenchError as exc:  # a condenser that loads a user's file: its own tests
        pytest.skip(f"{name} needs input a conformance run cannot give: {exc}")
    assert isinstance(syn, SyntheticSet)
    n = syn.images.shape[0]
    assert syn.images.shape[1:] == data.x_train.shape[1:]
    assert syn.images.dtype == torch.float32 and torch.isfinite(syn.images).all()
    labels = syn.labels
    if labels.dim() == 1:
        assert labels.dtype == torch.int64 and labels.shape == (n,)
        assert int(labels.min()) >= 0 and int(labels.max()) < data.num_classes
        hard = labels
    else:  # soft labels: one distribution per image
        assert labels.shape == (n, data.num_classes) and labels.dtype.is_floating_point
        assert torch.allclose(labels.sum(1), torch.ones(n), atol=1e-4)
        hard = labels.argmax(1)
    if spec.uses_ipc:
        assert torch.bincount(hard, minlength=data.num_classes).tolist() == \
            [IPC] * data.num_classes
    if syn.init_images is not None:
        assert syn.init_images.shape == syn.images.shape
        assert syn.curve and all("step" in row and "loss" in row for row in syn.curve)
        assert all(torch.isfinite(torch.tensor(row["loss"])) for row in syn.curve)
    # it survives the artifact cache's round trip
    back = SyntheticSet.from_tensors(syn.to_tensors())
    assert torch.equal(back.images, syn.images.cpu()) and torch.equal(back.labels,
                                                                      syn.labels.cpu())
    # determinism: the same seed gives the same set
    again = condense(name)
    assert torch.equal(again.images, syn.images) and torch.equal(again.labels, syn.labels)
    if syn.init_images is not None:  # a synthesising method depends on its seed
        other = condense(name, seed=1)
        assert not torch.equal(other.images, syn.images)


INITS = [n for n in CONDENSERS if "init" in get_registry().get("condenser", n).options]


@pytest.mark.parametrize("name", INITS)
def test_init_option_selects_real_images_or_noise(name):
    real = condense(name, init="real", iterations=1)
    noise = condense(name, init="noise", iterations=1)
    train = make_request().data.x_train
    first = real.init_images[0]
    assert (train == first).flatten(1).all(1).any()
    assert not (train == noise.init_images[0]).flatten(1).all(1).any()


class Interrupt(Exception):
    pass


RESUMABLE = [n for n in CONDENSERS
             if "checkpoint_every" in get_registry().get("condenser", n).options]


@pytest.mark.parametrize("name", RESUMABLE)
def test_interrupted_run_resumes_to_the_same_result(name, tmp_path):
    iters = 5
    whole = condense(name, iterations=iters, checkpoint_every=2)

    cache = ArtifactCache(tmp_path / "cache")
    ck = Checkpoint(cache, {"test": name})
    seen = []

    def crash_at_3(step, **scalars):
        seen.append(step)
        if step == 3:
            raise Interrupt()

    with pytest.raises(Interrupt):
        condense(name, checkpoint=ck, log=crash_at_3, iterations=iters, checkpoint_every=2)
    state = ck.load()  # tensors and plain values only: torch.load(weights_only=True)
    assert state is not None and int(state["iteration"]) == 2
    data_path, _ = cache.paths("checkpoints", {"test": name})
    torch.load(data_path, weights_only=True)

    resumed_steps = []
    resumed = condense(name, checkpoint=ck, iterations=iters, checkpoint_every=2,
                       log=lambda step, **s: resumed_steps.append(step))
    assert resumed_steps == [2, 3, 4]  # it did not start over
    assert resumed.info.get("resumed_from_iteration") == 2
    assert torch.equal(resumed.images, whole.images)
    assert torch.equal(resumed.init_images, whole.init_images)
    assert [r["loss"] for r in resumed.curve] == [r["loss"] for r in whole.curve]
    assert ck.load() is None  # cleared when done
