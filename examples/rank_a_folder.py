"""Describe a folder of labelled images and shortlist pretrained backbones for it.

python examples/rank_a_folder.py path/to/images            # every backbone available offline
python examples/rank_a_folder.py                            # scikit-learn's digits
python examples/rank_a_folder.py data/ --backbones efficientnet_lite0,mobilenetv2_100
"""

import argparse
import tempfile
from pathlib import Path

import autotransfer
from autotransfer.data.demo import write_digits_folder

parser = argparse.ArgumentParser()
parser.add_argument("folder", nargs="?", help="image folder (default: the digits)")
parser.add_argument("--backbones", default=None, help="comma-separated (default: all offline)")
parser.add_argument("--resolution", type=int, default=128)
args = parser.parse_args()

folder = args.folder or write_digits_folder(Path(tempfile.gettempdir()) / "autotransfer-digits")
backbones = args.backbones.split(",") if args.backbones else None
settings = autotransfer.ExtractionSettings(resolution=args.resolution)

descriptor = autotransfer.describe(folder, backbones=backbones, extraction=settings)
print(
    f"{descriptor.num_images} images, {descriptor.num_classes} classes, "
    f"BiT regime: {descriptor.regime['regime']}"
)
for backbone, sim in descriptor.source_similarity.items():
    print(f"  {backbone}: source-head mutual information {sim.head_mutual_info}, BN KL {sim.bn_kl}")

ranking = autotransfer.rank(folder, backbones=backbones, top_k=2, extraction=settings)
print(ranking.table())
print("shortlist for the search:", ranking.shortlist)
