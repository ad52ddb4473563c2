"""``runner.finetune(recipe, load=...)``: a family built on PALM (PLUG) fine-tunes through its own loader."""

from __future__ import annotations

import torch

from alicemind.core.cli import load_recipe
from alicemind.palm import PalmForConditionalGeneration
from alicemind.palm.runner import finetune, load_model_and_tokenizer


def test_finetune_uses_the_given_loader(tmp_path, make_config):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *"天气晴雨北京"]
    config = make_config("sofa-zh", vocab_size=len(vocab), pad_token_id=0, bos_token_id=2, eos_token_id=3)
    torch.manual_seed(0)
    folder = tmp_path / "tiny"
    PalmForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (tmp_path / "train.tsv").write_text("天气晴\t天气晴\n北京雨\t北京雨\n", encoding="utf-8")
    calls = []

    def load(spec, tokenizer=None, **overrides):
        calls.append((spec, overrides))
        return load_model_and_tokenizer(spec, tokenizer, **overrides)

    recipe = load_recipe("palm", "finetune-dureader-qg")
    recipe.update(model=str(folder), config={"hidden_dropout_prob": 0.0})
    recipe["data"].update(train=str(tmp_path / "train.tsv"), max_target_length=6)
    recipe["training"].update(num_epochs=None, max_steps=2, per_device_batch_size=2, precision="fp32", device="cpu",
                              progress_bar=False, output_dir=str(tmp_path / "run"))  # fmt: skip
    result = finetune(recipe, load=load)
    assert calls == [(str(folder), {"hidden_dropout_prob": 0.0})]
    assert result["train_loss"] > 0 and (tmp_path / "run" / "final" / "model.safetensors").is_file()
