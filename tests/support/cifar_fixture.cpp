#include "cifar_fixture.h"

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <vector>

#include <archive.h>
#include <archive_entry.h>

namespace ld::test {

namespace {
std::uint32_t mix(std::uint32_t a, std::uint32_t b) {
  std::uint32_t h = 2166136261u ^ a;
  h *= 16777619u;
  h ^= b;
  h *= 16777619u;
  return h ^ (h >> 15);
}
std::uint32_t file_id(const std::string& file) {
  std::uint32_t h = 0;
  for (char c : file) h = h * 31 + static_cast<unsigned char>(c);
  return h;
}
}  // namespace

std::uint8_t cifar_pixel(const std::string& file, int i, int p) {
  return static_cast<std::uint8_t>(
      mix(file_id(file) + static_cast<std::uint32_t>(i) * 7919u, static_cast<std::uint32_t>(p)));
}

int cifar_label(const std::string& file, int i) {
  return static_cast<int>(mix(file_id(file), static_cast<std::uint32_t>(i)) % 10);
}

void write_cifar_fixture(const std::string& dir, const CifarFixture& f) {
  std::filesystem::path folder = std::filesystem::path(dir) / "cifar-10-batches-bin";
  std::filesystem::create_directories(folder);
  auto write = [&](const std::string& name, int n) {
    std::ofstream out(folder / name, std::ios::binary);
    for (int i = 0; i < n; ++i) {
      out.put(static_cast<char>(cifar_label(name, i)));
      for (int p = 0; p < 3072; ++p) out.put(static_cast<char>(cifar_pixel(name, i, p)));
    }
  };
  for (int b = 1; b <= f.batches; ++b) write("data_batch_" + std::to_string(b) + ".bin", f.per_batch);
  write("test_batch.bin", f.test);
  std::ofstream(folder / "batches.meta.txt")
      << "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
}

void write_cifar_tar_gz(const std::string& dir, const std::string& tar_gz) {
  struct archive* a = archive_write_new();
  archive_write_add_filter_gzip(a);
  archive_write_set_format_pax_restricted(a);
  if (archive_write_open_filename(a, tar_gz.c_str()) != ARCHIVE_OK) throw std::runtime_error("cannot write " + tar_gz);
  std::filesystem::path folder = std::filesystem::path(dir) / "cifar-10-batches-bin";
  for (const auto& e : std::filesystem::directory_iterator(folder)) {
    std::ifstream in(e.path(), std::ios::binary);
    std::vector<char> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, ("cifar-10-batches-bin/" + e.path().filename().string()).c_str());
    archive_entry_set_size(entry, static_cast<la_int64_t>(data.size()));
    archive_entry_set_filetype(entry, AE_IFREG);
    archive_entry_set_perm(entry, 0644);
    archive_write_header(a, entry);
    archive_write_data(a, data.data(), data.size());
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
}

}  // namespace ld::test
