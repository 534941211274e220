// Policy plugin `python`: a drop criterion written in Python (issue 30). It
// embeds CPython (pybind11) and loads a class from the file the config
// names; the class sees the same PolicyInput as a C++ policy (plain Python
// objects) and answers a cut. The host's drop guards, cost guard and shadow
// mode apply unchanged. This plugin declares the guards (min_progress,
// keep_stages, ...) to give its defaults and applies them itself too, so
// that its reason names what held the class's answer back, as a built-in
// policy's does (the host's clamp after it then changes nothing). See
// docs/policies/python.md.
//
// A criterion file runs with the user's rights, like a plugin library.

#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <filesystem>

#include <pybind11/embed.h>
#include <pybind11/stl.h>
#include <spdlog/spdlog.h>

#include "learndrop/drop_guards.h"
#include "learndrop/sdk.h"

namespace py = pybind11;
using namespace pybind11::literals;

namespace {

struct PythonOptions {
  std::string file;
  std::string cls;
  std::string options;
  std::int64_t period = 0;
  bool feature_similarity = false;
  bool freeze_probe = false;
};

const ld::OptionTable<PythonOptions>& options_table() {
  static const auto table =
      ld::OptionTable<PythonOptions>()
          .add(ld::ConfigKey("file", ld::ValueType::kPath, "",
                             "the Python file that defines the criterion (relative to the config file's folder)"),
               &PythonOptions::file)
          .add(ld::ConfigKey("class", ld::ValueType::kString, "Policy",
                             "the class in `file`: Class(context, options), with decide(input) and optionally "
                             "save_state() / load_state(state)"),
               &PythonOptions::cls)
          .add(ld::ConfigKey("options", ld::ValueType::kString, "{}",
                             "the class's own options: a mapping ({threshold: 0.5}) or the same as JSON text"),
               &PythonOptions::options)
          .add(ld::period_key(), &PythonOptions::period)
          .add(ld::ConfigKey("feature_similarity", ld::ValueType::kBool, "false",
                             "ask the host for StageStats.feature_similarity(_start) (CKA on a probe batch); also "
                             "when the class has wants_feature_similarity = True"),
               &PythonOptions::feature_similarity)
          .add(ld::ConfigKey("freeze_probe", ld::ValueType::kBool, "false",
                             "ask the host for the freeze probe (input.probe_loss, StageStats.frozen_probe_loss); "
                             "also when the class has wants_freeze_probe = True"),
               &PythonOptions::freeze_probe)
          .add_unbound(ld::drop_guard_keys("0", "1", "1", "0", "false"));
  return table;
}

// One interpreter per process, started on first use and never finalized
// (extension modules cannot be unloaded). The GIL is released between calls.
void start_python() {
  static const bool started = [] {
    if (Py_IsInitialized()) return true;
    // Extension modules (numpy, ...) resolve CPython's symbols globally; the
    // host loaded this plugin, and with it libpython, locally.
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&Py_IsInitialized), &info) != 0 && info.dli_fname != nullptr) {
      dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    }
    py::initialize_interpreter(false);  // SIGINT and SIGTERM stay the host's
    PyEval_SaveThread();
    return true;
  }();
  (void)started;
}

class PythonPolicy : public ld::DropPolicy {
 public:
  PythonPolicy(const PythonOptions& o, ld::DropGuards guards, const ld::PolicyContext& ctx)
      : o_(o), guards_(guards) {
    if (o_.file.empty()) throw ld::Error("python: policy.file is not set (the Python file of the criterion)");
    std::error_code ec;
    const auto path = std::filesystem::absolute(o_.file, ec);
    if (ec || !std::filesystem::is_regular_file(path)) {
      throw ld::Error("python: policy.file " + o_.file + " does not exist or is not a file");
    }
    path_ = path.string();
    start_python();
    py::gil_scoped_acquire gil;
    py::module_ module;
    try {
      py::module_ util = py::module_::import("importlib.util");
      const std::string name = "learndrop_policy_" + std::to_string(reinterpret_cast<std::uintptr_t>(this));
      py::object spec = util.attr("spec_from_file_location")(name, path_);
      module = py::reinterpret_borrow<py::module_>(util.attr("module_from_spec")(spec));
      py::module_::import("sys").attr("modules")[py::str(name)] = module;
      spec.attr("loader").attr("exec_module")(module);
    } catch (py::error_already_set& e) {
      fail(e, "loading " + o_.file);
    }
    if (!py::hasattr(module, o_.cls.c_str())) {
      throw ld::Error("python: " + o_.file + " defines no class '" + o_.cls + "' (policy.class)");
    }
    py::object options, context;
    try {
      options = py::module_::import("json").attr("loads")(o_.options);
    } catch (py::error_already_set& e) {
      throw ld::Error("python: policy.options is not a JSON object: " + std::string(py::str(e.value())));
    }
    if (!py::isinstance<py::dict>(options)) throw ld::Error("python: policy.options is not a JSON object");
    py::object ns = py::module_::import("types").attr("SimpleNamespace");
    context = ns("num_stages"_a = ctx.num_stages, "steps_per_epoch"_a = ctx.steps_per_epoch, "epochs"_a = ctx.epochs,
                 "lr_warmup_epochs"_a = ctx.lr_warmup_epochs);
    py::object obj;
    try {
      obj = module.attr(o_.cls.c_str())(context, options);
      if (py::hasattr(obj, "wants_feature_similarity")) {
        wants_similarity_ = py::bool_(obj.attr("wants_feature_similarity"));
      }
      if (py::hasattr(obj, "wants_freeze_probe")) wants_freeze_probe_ = py::bool_(obj.attr("wants_freeze_probe"));
    } catch (py::error_already_set& e) {
      fail(e, o_.cls + "(context, options)");
    }
    if (!py::hasattr(obj, "decide")) {
      throw ld::Error("python: class '" + o_.cls + "' of " + o_.file + " has no decide(input)");
    }
    has_state_ = py::hasattr(obj, "save_state") && py::hasattr(obj, "load_state");
    // Members last: they hold Python objects, which only the GIL's holder may
    // release (a constructor that throws releases members after its locals).
    obj_ = std::move(obj);
    namespace_ = std::move(ns);
  }

  ~PythonPolicy() override {
    py::gil_scoped_acquire gil;
    obj_ = py::object();
    namespace_ = py::object();
  }

  std::int64_t period_steps() const override { return o_.period; }
  bool wants_feature_similarity() const override { return o_.feature_similarity || wants_similarity_; }
  bool wants_freeze_probe() const override { return o_.freeze_probe || wants_freeze_probe_; }

  ld::Decision decide(const ld::PolicyInput& in) override {
    py::gil_scoped_acquire gil;
    py::list stages;
    for (const auto& s : in.stages) {
      stages.append(namespace_("name"_a = s.name, "dropped"_a = s.dropped, "num_params"_a = s.num_params,
                               "param_norm"_a = s.param_norm, "relative_change"_a = s.relative_change,
                               "grad_norm"_a = s.grad_norm, "mean_grad_norm"_a = s.mean_grad_norm,
                               "feature_similarity"_a = s.feature_similarity,
                               "feature_similarity_start"_a = s.feature_similarity_start,
                               "frozen_probe_loss"_a = s.frozen_probe_loss));
    }
    py::object input =
        namespace_("eval_point"_a = in.eval_point, "step"_a = in.step, "epoch"_a = in.epoch, "cut"_a = in.cut,
                   "train_loss"_a = in.train_loss, "lr"_a = in.lr, "lr_sum"_a = in.lr_sum,
                   "steps_since_point"_a = in.steps_since_point, "samples"_a = in.samples,
                   "arrivals"_a = in.arrivals, "last_drop_epoch"_a = in.last_drop_epoch,
                   "held_cut"_a = in.held_cut, "held_reason"_a = in.held_reason, "probe_loss"_a = in.probe_loss,
                   "stages"_a = stages);
    py::object answer;
    try {
      answer = obj_.attr("decide")(input);
    } catch (py::error_already_set& e) {
      fail(e, o_.cls + ".decide");
    }
    ld::Decision d = read_answer(answer);
    std::string held;
    const std::size_t wanted = std::max(d.cut, in.cut);
    d.cut = guards_.clamp(in, wanted, &held);
    if (d.cut < wanted) {
      d.reason = d.cut == in.cut ? "asked for cut " + std::to_string(wanted) + "; held by " + held
                                 : d.reason + " (" + held + " holds back the rest)";
    } else if (d.cut == in.cut) {
      d.reason.clear();
    }
    return d;
  }

  bool has_state() const override { return has_state_; }

  ld::PolicyState save_state() const override {
    py::gil_scoped_acquire gil;
    ld::PolicyState state;
    try {
      py::object got = obj_.attr("save_state")();
      if (!py::isinstance<py::dict>(got)) {
        throw ld::Error("python: " + o_.cls + ".save_state() returned a " + type_name(got) +
                        "; expected a dict of name -> list of numbers");
      }
      for (const auto& kv : py::reinterpret_borrow<py::dict>(got)) {
        const std::string name = py::str(kv.first);
        try {
          state.values[name] = kv.second.cast<std::vector<double>>();
        } catch (const py::cast_error&) {
          throw ld::Error("python: " + o_.cls + ".save_state()['" + name + "'] is a " +
                          type_name(py::reinterpret_borrow<py::object>(kv.second)) + "; expected a list of numbers");
        }
      }
    } catch (py::error_already_set& e) {
      fail(e, o_.cls + ".save_state");
    }
    return state;
  }

  void load_state(const ld::PolicyState& state) override {
    py::gil_scoped_acquire gil;
    py::dict d;
    for (const auto& [name, values] : state.values) d[py::str(name)] = py::cast(values);
    try {
      obj_.attr("load_state")(d);
    } catch (py::error_already_set& e) {
      fail(e, o_.cls + ".load_state");
    }
  }

 private:
  static std::string type_name(const py::handle& h) { return py::str(py::type::of(h).attr("__name__")); }

  // The class's answer: a cut, (cut, reason[, mode]) or {"cut", "reason", "mode"}.
  ld::Decision read_answer(const py::object& a) const {
    const std::string expected = "; expected a cut (an int >= 0), (cut, reason) or {'cut': ..., 'reason': ...}";
    const std::string where = "python: " + o_.file + ": " + o_.cls + ".decide returned ";
    py::object cut, reason, mode;
    if (py::isinstance<py::dict>(a)) {
      py::dict d = py::reinterpret_borrow<py::dict>(a);
      if (!d.contains("cut")) throw ld::Error(where + "a dict without 'cut'" + expected);
      cut = d["cut"];
      if (d.contains("reason")) reason = d["reason"];
      if (d.contains("mode")) mode = d["mode"];
    } else if (py::isinstance<py::tuple>(a) || py::isinstance<py::list>(a)) {
      py::sequence s = py::reinterpret_borrow<py::sequence>(a);
      if (s.size() < 1 || s.size() > 3) throw ld::Error(where + "a sequence of " + std::to_string(s.size()) + expected);
      cut = s[0];
      if (s.size() > 1) reason = s[1];
      if (s.size() > 2) mode = s[2];
    } else {
      cut = a;
    }
    if (py::isinstance<py::bool_>(cut) || !py::isinstance<py::int_>(cut)) {
      throw ld::Error(where + std::string(py::repr(cut)) + " (a " + type_name(cut) + ") as the cut" + expected);
    }
    const long long value = cut.cast<long long>();
    if (value < 0) throw ld::Error(where + "cut " + std::to_string(value) + expected);
    ld::Decision d;
    d.cut = static_cast<std::size_t>(value);
    if (reason && !reason.is_none()) d.reason = py::str(reason);
    if (mode && !mode.is_none()) {
      const std::string m = py::str(mode);
      if (m == "cache") {
        d.mode = ld::DropModeHint::kCache;
      } else if (m == "freeze") {
        d.mode = ld::DropModeHint::kFreeze;
      } else if (m != "any") {
        throw ld::Error(where + "mode '" + m + "'; expected cache, freeze or any");
      }
    }
    return d;
  }

  // Throws ld::Error whose first line names the file, the line and the
  // exception (what the host prints), after logging the whole traceback.
  [[noreturn]] void fail(py::error_already_set& e, const std::string& during) const {
    std::string where = o_.file, full;
    try {
      py::module_ tb = py::module_::import("traceback");
      full = py::str(py::str("").attr("join")(tb.attr("format_exception")(e.type(), e.value(), e.trace())));
      if (py::isinstance(e.value(), py::module_::import("builtins").attr("SyntaxError"))) {
        py::object line = e.value().attr("lineno");
        if (!line.is_none()) where += ":" + std::string(py::str(line));
      } else {
        for (const auto& frame : tb.attr("extract_tb")(e.trace())) {
          if (std::string(py::str(frame.attr("filename"))) == path_) {
            where = o_.file + ":" + std::string(py::str(frame.attr("lineno")));  // the deepest in the user's file
          }
        }
      }
    } catch (...) {
      full = e.what();
    }
    const std::string message = std::string(py::str(py::type::of(e.value()).attr("__name__"))) + ": " +
                                std::string(py::str(e.value()));
    spdlog::error("python policy: {} raised:\n{}", during, full);
    throw ld::Error("python: " + where + ": " + message + " (in " + during + ")");
  }

  PythonOptions o_;
  ld::DropGuards guards_;
  std::string path_;
  py::object obj_, namespace_;
  bool has_state_ = false;
  bool wants_similarity_ = false;
  bool wants_freeze_probe_ = false;
};

void register_plugins(ld::Registrar& r) {
  ld::Manifest m;
  m.kind = ld::PluginKind::kPolicy;
  m.name = "python";
  m.version = "1.0.0";
  m.description = "a drop criterion written in Python: policy.file, policy.class (docs/policies/python.md)";
  m.keys = options_table().keys();
  r.add_policy(m, [](const ld::Options& o, const ld::PolicyContext& ctx) {
    return std::make_unique<PythonPolicy>(options_table().read(o), ld::DropGuards::from(o, ctx), ctx);
  });
}

}  // namespace

LEARNDROP_PLUGIN(register_plugins)
