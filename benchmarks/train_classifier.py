"""Train the feature network that sample quality is measured in (aekit.generation.quality.DigitClassifier) and write its weights.

    python benchmarks/train_classifier.py [--out src/aekit/generation/weights/mnist_classifier.safetensors] [--epochs 8]

MNIST's 60,000 training images, Adam (lr 1e-3, times 0.7 each epoch), batches of 128, seed 0, pixels in [0, 1], no
augmentation. Prints the test accuracy (the bar is 99%) and the file's SHA-256, which aekit.generation.quality.WEIGHTS_SHA256
must then hold (the package refuses weights with any other hash). The same seed on the same CPU kind gives the
same file; another CPU kind (AVX2 vs AVX-512) may round differently, hence the hash is of the shipped file.
"""

import argparse
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from aekit.configs import DataConfig
from aekit.data.datasets import load
from aekit.generation.quality import WEIGHTS, DigitClassifier, sha256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = load(DataConfig(name="mnist"))
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    generator = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(data.x_train), generator=generator)
        for i in range(0, len(order), 128):
            batch = order[i : i + 128]
            loss = torch.nn.functional.cross_entropy(model(data.x_train[batch]), data.y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(data.x_test[i : i + 2000]).argmax(1) == data.y_test[i : i + 2000]).sum())
                          for i in range(0, len(data.x_test), 2000))  # fmt: skip
        print(f"epoch {epoch + 1}: test accuracy {correct / len(data.x_test):.2%} ({time.perf_counter() - start:.0f} s)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(args.out))
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB), SHA-256 {sha256(args.out)}")
    print("set aekit.generation.quality.WEIGHTS_SHA256 to that hash")


if __name__ == "__main__":
    main()
