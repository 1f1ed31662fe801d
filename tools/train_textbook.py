"""Train a textbook CNN on the full Fashion-MNIST and report test accuracy and wall times.

    python tools/train_textbook.py --model chollet --epochs 5     # Chollet ch. 5: RMSprop, batch 64
    python tools/train_textbook.py --model geron --epochs 10      # Geron ch. 14

Chollet's model is compiled as in the book (rmsprop, categorical_crossentropy on one-hot labels,
batch 64). Geron's uses sparse_categorical_crossentropy; the book's optimizer for it (Nadam) is not in
cnnc, so --optimizer defaults to adam for it. Not run in CI: a Geron epoch takes minutes.
"""
import argparse
import json
import time

import numpy as np

import cnnc
from cnnc import utils, zoo
from cnnc.callbacks import Callback
from cnnc.datasets import fashion_mnist


class EpochTimer(Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["epoch_seconds"] = time.perf_counter() - self.t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(zoo.ARCHITECTURES), default="chollet")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--optimizer", default=None, help="default: rmsprop (chollet), adam (geron)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--validation-split", type=float, default=0.0)
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()

    utils.set_random_seed(args.seed)
    (xtr, ytr), (xte, yte) = fashion_mnist.load_data()
    xtr = (xtr.astype(np.float32) / 255.0)[..., None]
    xte = (xte.astype(np.float32) / 255.0)[..., None]
    model = zoo.ARCHITECTURES[args.model]()
    optimizer = args.optimizer or ("rmsprop" if args.model == "chollet" else "adam")
    if args.model == "chollet":  # as in the book: one-hot labels
        model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
        ytr_fit, yte_fit = utils.to_categorical(ytr, 10), utils.to_categorical(yte, 10)
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        ytr_fit, yte_fit = ytr, yte
    cfg = cnnc.show_config(print_=False)
    print(f"{args.model}: {model.count_params():,} params, {optimizer}, batch {args.batch_size}, "
          f"{args.epochs} epochs, {cfg['threads']} threads, {cfg['simd']}")
    t0 = time.perf_counter()
    hist = model.fit(xtr, ytr_fit, epochs=args.epochs, batch_size=args.batch_size, verbose=2,
                     validation_split=args.validation_split, callbacks=[EpochTimer()])
    train_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    loss, acc = model.evaluate(xte, yte_fit, batch_size=256, verbose=0)
    eval_s = time.perf_counter() - t1
    result = {"model": args.model, "optimizer": optimizer, "epochs": args.epochs, "batch_size": args.batch_size,
              "test_accuracy": acc, "test_loss": loss, "train_seconds": train_s, "eval_seconds": eval_s,
              "epoch_seconds": hist.history.get("epoch_seconds"), "threads": cfg["threads"], "simd": cfg["simd"]}
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
