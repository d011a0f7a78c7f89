"""Make a tiny random-weight Qwen2 checkpoint that the real vLLM (CPU build) can serve.

Run with the vLLM venv's python (it needs torch, transformers and tokenizers):
    python tests/contract/tiny_model.py OUTDIR

No model hub is reachable from the build machines, so the checkpoint is made here: a byte-level
BPE tokenizer trained on a few sentences, and a 2-layer Qwen2ForCausalLM with random weights,
hidden 128, 2 attention heads, 1 KV head (head_dim 64: vLLM's CPU attention kernels reject
head_dim 16). About 300 KB; the text it writes is random, which is all the contract test needs.
"""

from __future__ import annotations

import sys
from pathlib import Path

VOCAB = 512
CORPUS = [
    "DeepSeek models are served by vLLM on GPU nodes managed by a Kubernetes operator.",
    "The operator scales replicas on queue depth, KV-cache usage and time to first token.",
    "Blue-green rollouts switch traffic only after the preview passes its analysis.",
    "Prometheus scrapes every engine pod; Grafana shows the fleet; alerts page the on-call.",
    "The quick brown fox jumps over the lazy dog. 0123456789 !?.,;:-_()[]{}",
] * 20


def make(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.model_max_length = 2048
    fast.save_pretrained(out)

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=64,
        max_position_embeddings=2048,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.eos_token_id,
        pad_token_id=fast.eos_token_id,
        tie_word_embeddings=True,
        torch_dtype="bfloat16",
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: tiny_model.py OUTDIR")
    make(Path(sys.argv[1]))
    print(f"tiny model written to {sys.argv[1]}")
