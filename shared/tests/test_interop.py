"""core.interop: families as transformers Auto models (lazy registration, exact outputs, strict loading), the
private-import scan, imports without transformers, folder errors, and ``alicemind list --json``."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from alicemind.core.cli import main
from alicemind.core.cli.app import Plugin
from alicemind.core.cli.interop import listing_json
from alicemind.core.config import ModelConfig
from alicemind.core.hub import CheckpointEntry, register_checkpoint, unregister_checkpoint
from alicemind.core.interop import FamilySpec, NoHeadError, UnknownModelTypeError, register_family, spec_for_folder
from alicemind.core.interop.checks import max_output_difference
from alicemind.core.modeling import PreTrainedModel


@pytest.fixture(autouse=True)
def hub_offline(monkeypatch):
    # Per test, not at import: a module-level setting leaked into the download tests of the same session.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@dataclasses.dataclass
class ToyInteropConfig(ModelConfig):
    model_type = "toy-interop"
    vocab_size: int = 20
    hidden_size: int = 8
    num_labels: int = 3
    eos_token_id: int = 2  # transformers drops generation fields from its kwargs; ours must survive


@dataclasses.dataclass
class ToyOutput:
    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None


class ToyInteropModel(PreTrainedModel):
    config_class = ToyInteropConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, input_ids, attention_mask=None):
        hidden = torch.tanh(self.proj(self.embed(input_ids)))
        return ToyOutput(hidden, hidden[:, 0])


register_family(FamilySpec(ToyInteropConfig, {"base": ToyInteropModel}))


@pytest.fixture
def saved(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ToyInteropModel(ToyInteropConfig()).eval()
    model.save_pretrained(tmp_path / "toy")
    return model, tmp_path / "toy"


def test_auto_model_returns_our_model_with_our_outputs(saved):
    from transformers import AutoConfig, AutoModel

    model, folder = saved
    config = AutoConfig.from_pretrained(folder)
    assert config.model_type == "toy-interop" and config.eos_token_id == 2
    assert config.to_alicemind() == model.config
    loaded = AutoModel.from_pretrained(folder)
    assert type(loaded).__name__ == "ToyInteropModel" and not loaded.training
    ids = torch.tensor([[3, 4, 5], [6, 7, 8]])
    out = loaded(input_ids=ids)
    assert list(out.keys()) == ["last_hidden_state", "pooler_output"]
    assert max_output_difference(model, "AutoModel", folder, {"input_ids": ids}) == 0.0
    assert torch.equal(loaded(input_ids=ids, return_dict=False)[0], out.last_hidden_state)


def test_loading_is_strict_and_refuses_what_it_cannot_honour(saved, tmp_path):
    from safetensors.torch import load_file, save_file
    from transformers import AutoModel

    _, folder = saved
    with pytest.raises(TypeError, match=r"does not support \['quantization_config'\]"):
        AutoModel.from_pretrained(folder, quantization_config={"bits": 4})
    with pytest.raises(ValueError, match="does not return attention probabilities"):
        AutoModel.from_pretrained(folder)(input_ids=torch.tensor([[3]]), output_attentions=True)
    weights = load_file(folder / "model.safetensors")
    weights.pop("proj.bias")
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(Exception, match="proj.bias"):  # a missing weight is an error, never a fresh init
        AutoModel.from_pretrained(folder)


def test_a_config_passed_in_overrides_the_folder(saved):
    from transformers import AutoConfig, AutoModel

    _, folder = saved
    config = AutoConfig.from_pretrained(folder)
    config.eos_token_id = 5
    assert AutoModel.from_pretrained(folder, config=config).alicemind.config.eos_token_id == 5


def _installed_alicemind_packages() -> list[str]:
    import pkgutil

    import alicemind

    return sorted(f"alicemind.{m.name}" for m in pkgutil.iter_modules(alicemind.__path__) if m.ispkg)


def test_packages_import_without_transformers_and_register_at_its_import(tmp_path):
    """Importing every installed package leaves transformers unimported; importing it then registers them all."""
    packages = _installed_alicemind_packages()
    code = textwrap.dedent(
        f"""
        import dataclasses, importlib, sys
        from alicemind.core.config import ModelConfig
        from alicemind.core.interop import FamilySpec, register_family, registered_specs
        from alicemind.core.modeling import PreTrainedModel

        @dataclasses.dataclass
        class LazyConfig(ModelConfig):
            model_type = "lazy-interop"
            hidden_size: int = 4

        class LazyModel(PreTrainedModel):
            config_class = LazyConfig

        register_family(FamilySpec(LazyConfig, {{"base": LazyModel}}))
        for name in {packages!r}:
            importlib.import_module(name)
        assert "transformers" not in sys.modules, "a package imported transformers eagerly"
        import transformers
        LazyModel(LazyConfig()).save_pretrained({str(tmp_path / "lazy")!r})
        print(type(transformers.AutoConfig.from_pretrained({str(tmp_path / "lazy")!r})).__name__)
        for model_type, spec in sorted(registered_specs().items()):
            if not spec.peer:
                print(model_type, transformers.AutoConfig.for_model(model_type).model_type)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "LazyHFConfig"
    assert all(line.split()[0] == line.split()[1] for line in lines[1:])


def test_every_installed_package_imports_with_transformers_blocked():
    packages = _installed_alicemind_packages()
    assert "alicemind.core" in packages
    code = textwrap.dedent(
        f"""
        import importlib, importlib.abc, sys

        class NoTransformers(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == "transformers" or name.startswith("transformers."):
                    raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")

        sys.meta_path.insert(0, NoTransformers())
        for name in {packages!r}:
            importlib.import_module(name)
        importlib.import_module("alicemind.core.interop")
        assert "transformers" not in sys.modules
        print("imported", len({packages!r}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"imported {len(packages)}"


PRIVATE = re.compile(r"transformers\.models\.|transformers(\.\w+)*\._\w|from transformers(\.\w+)* import \(?\s*_\w")


def test_no_source_imports_a_private_transformers_module():
    import alicemind  # the namespace: every installed package's sources (core's alone in its isolation run)

    sources = sorted({p for folder in alicemind.__path__ for p in Path(folder).rglob("*.py")})
    assert any(p.name == "hf.py" and p.parent.name == "interop" for p in sources)
    offenders = []
    for path in sources:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if "transformers" in code and ("import" in code or "transformers." in code) and PRIVATE.search(code):
                offenders.append(f"{path}:{number}: {line.strip()}")
    assert offenders == []
    assert PRIVATE.search("from transformers.models.bert import modeling_bert")  # the scan does catch them
    assert PRIVATE.search("from transformers.utils._hub import x")
    assert not PRIVATE.search("from transformers import AutoConfig, PreTrainedModel")


def test_folder_errors_are_one_line(tmp_path, saved):
    with pytest.raises(FileNotFoundError, match="no model folder at"):
        spec_for_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        spec_for_folder(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "gpt2"}')
    with pytest.raises(UnknownModelTypeError, match="model_type 'gpt2' is not one of an installed family's"):
        spec_for_folder(tmp_path / "other")
    with pytest.raises(NoHeadError, match=r"ToyInteropConfig models have no 'masked-lm' head; tasks: \['base'\]"):
        spec_for_folder(saved[1]).model_class("masked-lm")
    assert main(["export", "onnx", str(saved[1]), str(tmp_path / "x"), "--task", "masked-lm"]) == 2


def test_list_json_gives_release_metadata(capsys):
    entry = CheckpointEntry("toyfam.base", "toyfam", "https://example.org/toy.bin", "toy.bin", "toy-state-dict",
                            size=123, sha256="ab" * 32, license="Apache-2.0")  # fmt: skip
    register_checkpoint(entry)
    try:
        data = json.loads(listing_json([Plugin("toyfam", "alicemind-toyfam", "1.0", ["toyfam"])], lambda f: ["r1"]))
    finally:
        unregister_checkpoint("toyfam.base")
    family = data["families"][0]
    assert family["name"] == "toyfam" and family["recipes"] == ["r1"] and family["commands"] == ["alicemind toyfam"]
    assert family["checkpoints"][0] == dataclasses.asdict(entry)
    assert main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert isinstance(listed["families"], list)


def test_model_card_says_what_the_folder_is_and_what_was_checked(saved, tmp_path):
    from transformers import AutoModel

    model, _ = saved
    model.save_pretrained(tmp_path / "carded", model_card=["transformers AutoModel: identical outputs"])
    card = (tmp_path / "carded" / "README.md").read_text()
    for text in (
        "license: other",
        "# ToyInteropModel (toy-interop)",
        "## Architecture",
        "model_type `toy-interop`, task `base`",
        f"{model.num_parameters():,} parameters",
        "## Source release and conversion",
        "read from: built in this process (not converted)",
        "## How to load",
        "`AutoModel.from_pretrained('PATH')`",
        "alicemind export onnx PATH OUT_DIR --task base",
        "- model.safetensors re-read: all 3 tensors equal the model's",
        "- transformers AutoModel: identical outputs",
        '"eos_token_id": 2',
    ):
        assert text in card, text
    model.save_pretrained(tmp_path / "carded")  # a plain save replaces the folder the card save wrote
    assert sorted(p.name for p in (tmp_path / "carded").iterdir()) == ["config.json", "model.safetensors"]
    AutoModel.from_pretrained(saved[1]).save_pretrained(tmp_path / "via_hf")  # transformers' save writes a card
    assert "## Checks passed" in (tmp_path / "via_hf" / "README.md").read_text()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="refusing to replace it"):
        AutoModel.from_pretrained(saved[1]).save_pretrained(tmp_path / "foreign")
