"""A convolutional net as a researcher would write it for Fashion-MNIST, in
plain PyTorch: two Conv–BatchNorm–ReLU–MaxPool stages, a hidden
Linear–ReLU layer and a linear read-out. Nothing here knows target
propagation; targetprop cuts it into blocks and gives each a feedback map.

    targetprop train --data fashion-mnist --arch examples/conv_net.py:conv_net --rule dtp --epochs 10 --out runs/conv
"""
from torch import nn


def conv_net(input_shape, num_classes):
    channels, height, width = input_shape
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * (height // 4) * (width // 4), 256), nn.ReLU(),
        nn.Linear(256, num_classes),
    )
