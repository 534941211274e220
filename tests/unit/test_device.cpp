// Device resolution, precision, autocast, loss scaling and the host-to-device
// stager. Everything here runs on the CPU; the CUDA cases skip themselves
// where LibTorch sees no GPU (they run in CUDA builds, tools/gpu/check.sh).
#include <gtest/gtest.h>

#include <set>

#include <ATen/ATen.h>
#include <torch/cuda.h>

#include "learndrop/core/device.h"
#include "learndrop/core/feature_shift.h"
#include "learndrop/error.h"
#include "test_env.h"

namespace ld::core {

namespace {
bool have_cuda() { return torch::cuda::is_available(); }
}  // namespace

TEST(Device, SettingsAreAutoCpuCudaOrCudaN) {
  for (const char* ok : {"auto", "cpu", "cuda", "cuda:0", "cuda:12"}) EXPECT_TRUE(is_device_setting(ok)) << ok;
  for (const char* bad : {"", "gpu", "CUDA", "cuda:", "cuda:x", "cuda:-1", "cpu:0", "mps"})
    EXPECT_FALSE(is_device_setting(bad)) << bad;
  EXPECT_TRUE(resolve_device("cpu").is_cpu());
  EXPECT_EQ(resolve_device("auto").is_cuda(), have_cuda()) << "auto is the first GPU exactly when there is one";
  EXPECT_NE(test::error_of([] { resolve_device("tpu"); }).find("runtime.device: expected auto, cpu, cuda or cuda:N"),
            std::string::npos);
}

TEST(Device, AMissingGpuIsAClearErrorNamingTheKey) {
  if (have_cuda()) GTEST_SKIP() << "this machine has a GPU";
  for (const char* setting : {"cuda", "cuda:1"}) {
    const std::string e = test::error_of([&] { resolve_device(setting); });
    EXPECT_NE(e.find("runtime.device: '" + std::string(setting) + "'"), std::string::npos) << e;
    EXPECT_NE(e.find("use runtime.device: cpu or auto"), std::string::npos) << e;
  }
}

TEST(Device, AGpuIndexPastTheLastIsRefused) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  const std::string setting = "cuda:" + std::to_string(torch::cuda::device_count());
  EXPECT_NE(test::error_of([&] { resolve_device(setting); }).find("LibTorch sees"), std::string::npos);
  EXPECT_EQ(device_text(resolve_device("cuda")), "cuda:0");
}

TEST(Precision, Fp16NeedsCudaAndBf16OnTheCpuNeedsNativeBfloat16) {
  const at::Device cpu(at::kCPU), gpu(at::kCUDA, 0);
  EXPECT_EQ(precision_refusal(cpu, Precision::kFp32), "");
  EXPECT_NE(precision_refusal(cpu, Precision::kFp16).find("fp16 needs a CUDA device"), std::string::npos);
  EXPECT_EQ(precision_refusal(cpu, Precision::kBf16).empty(), cpu_has_native_bf16());
  // Both branches of the switch, whatever this CPU has (LEARNDROP_TEST_CPU_BF16 is the seam).
  {
    test::ScopedEnv absent("LEARNDROP_TEST_CPU_BF16", "0");
    EXPECT_FALSE(cpu_has_native_bf16());
    EXPECT_NE(precision_refusal(cpu, Precision::kBf16).find("no native bfloat16"), std::string::npos);
  }
  {
    test::ScopedEnv present("LEARNDROP_TEST_CPU_BF16", "1");
    EXPECT_TRUE(cpu_has_native_bf16());
    EXPECT_EQ(precision_refusal(cpu, Precision::kBf16), "");
  }
  {
    test::ScopedEnv bad("LEARNDROP_TEST_CPU_BF16", "yes");
    EXPECT_NE(test::error_of([] { cpu_has_native_bf16(); }).find("expected 0 or 1, got 'yes'"), std::string::npos);
  }
  EXPECT_EQ(precision_refusal(gpu, Precision::kFp16), "");
  EXPECT_EQ(precision_refusal(gpu, Precision::kBf16), "");
  for (auto p : {Precision::kFp32, Precision::kBf16, Precision::kFp16}) EXPECT_EQ(parse_precision(precision_text(p)), p);
  EXPECT_EQ(compute_dtype(Precision::kBf16), at::kBFloat16);
  EXPECT_EQ(compute_dtype(Precision::kFp16), at::kHalf);
  EXPECT_EQ(compute_dtype(Precision::kFp32), at::kFloat);
}

TEST(Precision, NativeBfloat16IsReadFromTheFlagsWords) {
  EXPECT_TRUE(flags_have_native_bf16(" fpu sse avx512f avx512_bf16 clzero"));
  EXPECT_TRUE(flags_have_native_bf16(" amx_bf16 amx_tile"));
  EXPECT_TRUE(flags_have_native_bf16("avx512_bf16"));
  EXPECT_FALSE(flags_have_native_bf16(" fpu sse avx2 avx512f avx512bw"));
  EXPECT_FALSE(flags_have_native_bf16(" xavx512_bf16 avx512_bf16x"));
  EXPECT_FALSE(flags_have_native_bf16(""));
}

TEST(Precision, AutocastGuardCastsMatrixProductsOnlyInsideItsScope) {
  const at::Tensor a = at::randn({8, 8}), b = at::randn({8, 8});
  EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat);
  {
    AutocastGuard fp32(at::Device(at::kCPU), Precision::kFp32);
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat) << "fp32 enables nothing";
  }
  {
    AutocastGuard bf16(at::Device(at::kCPU), Precision::kBf16);
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    {
      AutocastGuard inner(at::Device(at::kCPU), Precision::kBf16);
      EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16);
    }
    EXPECT_EQ(at::mm(a, b).scalar_type(), at::kBFloat16) << "an inner scope must not end the outer one";
  }
  EXPECT_EQ(at::mm(a, b).scalar_type(), at::kFloat) << "autocast left enabled";
}

TEST(GradScaler, DisabledScalerChangesNothing) {
  GradScaler s(false);
  const at::Tensor loss = at::tensor(3.5);
  EXPECT_TRUE(s.scale_loss(loss).equal(loss));
  at::Tensor p = at::ones({2}).requires_grad_(true);
  (p * at::tensor(std::numeric_limits<float>::infinity())).sum().backward();
  EXPECT_TRUE(s.unscale({p})) << "a disabled scaler never skips";
  EXPECT_EQ(s.scale(), 1.0);
}

TEST(GradScaler, UnscaledGradientsEqualTheUnscaledBackward) {
  at::manual_seed(0);
  const at::Tensor x = at::randn({16, 4});
  at::Tensor w1 = at::randn({4, 3}).requires_grad_(true);
  at::Tensor w2 = w1.detach().clone().requires_grad_(true);
  at::mm(x, w1).pow(2).mean().backward();
  GradScaler s(true, 1024.0);
  s.scale_loss(at::mm(x, w2).pow(2).mean()).backward();
  EXPECT_FALSE(w2.grad().allclose(w1.grad())) << "the gradient was not scaled";
  EXPECT_TRUE(s.unscale({w2}));
  EXPECT_TRUE(w2.grad().allclose(w1.grad(), 1e-6, 1e-7));  // a power of two: exact up to rounding of the sum
}

TEST(GradScaler, AnOverflowSkipsTheStepAndHalvesTheScaleCleanStepsGrowIt) {
  GradScaler s(true, 8.0, /*growth_interval=*/3);
  at::Tensor p = at::ones({3}).requires_grad_(true);
  p.mutable_grad() = at::tensor({1.0f, std::numeric_limits<float>::infinity(), 0.0f});
  const bool finite = s.unscale({p});
  EXPECT_FALSE(finite);
  s.update(finite);
  EXPECT_EQ(s.scale(), 4.0);
  EXPECT_EQ(s.skipped_steps(), 1);
  p.mutable_grad() = at::tensor({1.0f, std::nanf(""), 0.0f});
  EXPECT_FALSE(s.unscale({p})) << "NaN counts as an overflow";
  for (int i = 0; i < 3; ++i) {
    p.mutable_grad() = at::ones({3});
    const bool ok = s.unscale({p});
    EXPECT_TRUE(ok);
    s.update(ok);
  }
  EXPECT_EQ(s.scale(), 8.0) << "3 clean steps double the scale";
}

TEST(DeviceStager, OnTheCpuItHandsTheTensorsThrough) {
  DeviceStager stager(at::Device(at::kCPU), 2);
  EXPECT_FALSE(stager.copies());
  const at::Tensor t = at::randn({4, 3});
  DeviceStager::Staged s = stager.stage({t});
  DeviceStager::wait(s);
  EXPECT_EQ(s.tensors.at(0).data_ptr(), t.data_ptr());
}

// The ring's bookkeeping, run on the CPU: buffers are reused (never
// reallocated for batches that fit), and what a stage returns never aliases a
// buffer that a later stage overwrites.
TEST(DeviceStager, StagingBuffersAreReusedAndNeverAliasWhatWasHandedOut) {
  DeviceStager stager(at::Device(at::kCPU), 3, /*force_staging=*/true);
  ASSERT_TRUE(stager.copies());
  std::vector<DeviceStager::Staged> out;
  std::vector<at::Tensor> in;
  std::set<const void*> buffers;
  for (int i = 0; i < 12; ++i) {
    const std::int64_t rows = i == 11 ? 5 : 8;  // a smaller last batch
    in.push_back(at::full({rows, 4}, static_cast<float>(i)));
    out.push_back(stager.stage({in.back(), at::full({rows}, i, at::kLong)}));
    EXPECT_EQ(out.back().slot, i % 3);
    buffers.insert(stager.buffers(static_cast<int>(out.back().slot)).at(0).data_ptr());
  }
  EXPECT_EQ(buffers.size(), 3u) << "a staging buffer was reallocated";
  for (int i = 0; i < 12; ++i) {
    DeviceStager::wait(out[static_cast<std::size_t>(i)]);
    EXPECT_TRUE(out[static_cast<std::size_t>(i)].tensors.at(0).equal(in[static_cast<std::size_t>(i)])) << i;
    EXPECT_EQ(out[static_cast<std::size_t>(i)].tensors.at(1).size(0), in[static_cast<std::size_t>(i)].size(0));
  }
}

// On a GPU: 2 slots, 64 batches, the compute stream kept busy so copies queue
// behind it. Every batch must arrive intact although its staging buffer was
// refilled 31 times; refills wait for the copy out of the buffer.
TEST(DeviceStager, CudaCopiesArriveIntactWhileBuffersAreRefilled) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA device";
  const at::Device gpu(at::kCUDA, 0);
  DeviceStager stager(gpu, 2);
  ASSERT_TRUE(stager.copies());
  std::vector<DeviceStager::Staged> out;
  std::vector<at::Tensor> in;
  at::Tensor busy = at::randn({2048, 2048}, at::TensorOptions().device(gpu));
  for (int i = 0; i < 64; ++i) {
    busy = at::mm(busy, busy).tanh();  // queue work on the compute stream
    in.push_back(at::full({256, 1024}, static_cast<float>(i)));
    out.push_back(stager.stage({in.back()}));
  }
  std::set<const void*> buffers;
  for (int s = 0; s < 2; ++s) buffers.insert(stager.buffers(s).at(0).data_ptr());
  EXPECT_EQ(buffers.size(), 2u);
  EXPECT_TRUE(stager.buffers(0).at(0).is_pinned());
  for (int i = 0; i < 64; ++i) {
    DeviceStager::wait(out[static_cast<std::size_t>(i)]);
    const at::Tensor& t = out[static_cast<std::size_t>(i)].tensors.at(0);
    EXPECT_TRUE(t.is_cuda());
    EXPECT_TRUE(t.cpu().equal(in[static_cast<std::size_t>(i)])) << "batch " << i << " was overwritten in flight";
  }
}

TEST(FeatureShiftGather, MatchesTheRowCopierAndKeepsTheStorageType) {
  at::manual_seed(5);
  const at::Tensor stored = at::randn({6, 5, 7, 3});
  const std::vector<std::int64_t> dy = {0, 1, -2, 4, -5, 3}, dx = {0, -1, 2, 6, 0, -7};
  const std::vector<float> fill = {0.5f, -1.25f, 2.0f};  // exact in bfloat16
  const at::Tensor expected = shift_stored(stored, dy, dx, fill);
  EXPECT_TRUE(shift_stored_gather(stored, dy, dx, fill).equal(expected));
  const at::Tensor half = stored.to(at::kBFloat16);
  const at::Tensor shifted = shift_stored(half, dy, dx, fill);  // takes the gather path
  EXPECT_EQ(shifted.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(shifted.to(at::kFloat).equal(shift_stored(half.to(at::kFloat), dy, dx, fill)));
  if (have_cuda()) {
    EXPECT_TRUE(shift_stored(stored.cuda(), dy, dx, fill).cpu().equal(expected));
  }
}

}  // namespace ld::core
