// Precompiled LibTorch headers shared by every target that uses torch.
#include <ATen/ATen.h>
#include <torch/nn.h>
#include <torch/optim.h>
#include <torch/serialize.h>
