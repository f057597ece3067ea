// Small, valid model files and folders of each kind the installer handles,
// made with the writers of model_fixtures.h so that model/'s probe
// recognises them (tested in tests/model/install_fixtures_test.cc). The
// tensors are tiny (a few KiB per file) but carry the keys and the
// dimensions the spec §4 rules look at; the data is zeros.
//
// Two forms of each: the bytes (for a fake server, see fake_hf_hub.h) and a
// writer to disk (for local installs).
//
//   TempDir dir;
//   WriteSd1Checkpoint(dir.path() / "dreamy.safetensors");  // main sd-1
//   WriteFixtureFiles(dir.path() / "sdxl", DiffusersSdxlFiles({}));
//
// What each probes as (type/format/base):
//   Sd1CheckpointBytes            main/checkpoint/sd-1 (variant normal)
//   SdxlCheckpointBytes           main/checkpoint/sdxl
//   LoraSd1Bytes                  lora/lycoris/sd-1
//   EmbeddingSd1Bytes             embedding/embedding_file/sd-1
//   EmbeddingSdxlBytes            embedding/embedding_file/sdxl
//   LearnedEmbedsBinBytes         a torch pickle {"<concept>": [768]}; in a
//                                 folder as learned_embeds.bin it is
//                                 embedding/embedding_folder/sd-1
//   VaeFolderFiles                vae/diffusers (sd-1, or sdxl when asked)
//   DiffusersSdxlFiles            main/diffusers/sdxl (a folder)
//   NonModelSafetensorsBytes      a valid safetensors file that is no model
//   HostilePickleCheckpointBytes  a torch zip checkpoint whose pickle calls
//                                 os.system (must be refused, never run)
//   HtmlPageBytes                 the HTML page a site sends where a model
//                                 was expected (a login or error page)
//
// Thread-safety: free functions with no shared state. Writers abort the test
// binary when a file cannot be written (see model_fixtures.h).
#ifndef MM_TESTS_TESTING_INSTALL_FIXTURES_H_
#define MM_TESTS_TESTING_INSTALL_FIXTURES_H_

#include <filesystem>
#include <string>
#include <vector>

namespace mm::testing {

// One file of a model folder or a repo, by relative path ('/' separated).
struct FixtureFile {
  std::string path;
  std::string contents;
};

// Single files.
std::string Sd1CheckpointBytes();
std::string SdxlCheckpointBytes();
std::string LoraSd1Bytes();
std::string EmbeddingSd1Bytes();
std::string EmbeddingSdxlBytes();
std::string LearnedEmbedsBinBytes();
std::string NonModelSafetensorsBytes();
// `marker` is the path the pickle would `touch` if it were ever run: a test
// checks that it still does not exist afterwards.
std::string HostilePickleCheckpointBytes(const std::string& marker);
std::string HtmlPageBytes();

// Folders, as relative paths and contents.
struct VaeFolderOptions {
  bool sdxl = false;
  // The weights as F16 tensors; the file name is unchanged (as on a repo's
  // "fp16" branch), so the bytes differ from the F32 ones.
  bool fp16_weights = false;
};
std::vector<FixtureFile> VaeFolderFiles(const VaeFolderOptions& options);

struct DiffusersSdxlOptions {
  // `<component>/*.fp16.safetensors` beside the fp32 weights.
  bool fp16 = false;
  // `model.onnx` (and `model.onnx_data`) files, and the vae_decoder and
  // vae_encoder folders of an ONNX export.
  bool onnx = false;
  // What a hub repo holds besides the pipeline: a top-level single-file
  // checkpoint `sd_xl_base_1.0.safetensors`, README.md, an image and
  // .gitattributes.
  bool repo_extras = false;
};
// An SDXL pipeline laid out like stabilityai/stable-diffusion-xl-base-1.0
// (spec §6.2's worked example): model_index.json, scheduler, text_encoder,
// text_encoder_2, tokenizer, tokenizer_2, unet, vae.
std::vector<FixtureFile> DiffusersSdxlFiles(
    const DiffusersSdxlOptions& options);

// Writers.
void WriteSd1Checkpoint(const std::filesystem::path& path);
void WriteSdxlCheckpoint(const std::filesystem::path& path);
void WriteLoraSd1(const std::filesystem::path& path);
void WriteEmbeddingSd1(const std::filesystem::path& path);
void WriteNonModelSafetensors(const std::filesystem::path& path);
void WriteHostilePickleCheckpoint(const std::filesystem::path& path,
                                  const std::string& marker);
// Writes every file under `folder`, creating folders as needed.
void WriteFixtureFiles(const std::filesystem::path& folder,
                       const std::vector<FixtureFile>& files);

}  // namespace mm::testing

#endif  // MM_TESTS_TESTING_INSTALL_FIXTURES_H_
