#pragma once

#include <cstdint>
#include <string>

namespace ld::test {

/// A small data set in CIFAR-10's binary format.
struct CifarFixture {
  int per_batch = 20;  ///< Records in each data_batch_N.bin.
  int batches = 2;     ///< data_batch_1..N.bin.
  int test = 10;
};

/// Writes cifar-10-batches-bin/{data_batch_*.bin,test_batch.bin,batches.meta.txt} under `dir`.
void write_cifar_fixture(const std::string& dir, const CifarFixture& f = {});

/// Packs the folder written by write_cifar_fixture into a .tar.gz as distributed.
void write_cifar_tar_gz(const std::string& dir, const std::string& tar_gz);

/// Byte `p` (CHW order) of record `i` of `file` ("data_batch_1.bin", "test_batch.bin"), and its label.
std::uint8_t cifar_pixel(const std::string& file, int i, int p);
int cifar_label(const std::string& file, int i);

}  // namespace ld::test
