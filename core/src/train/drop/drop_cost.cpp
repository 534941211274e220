#include "learndrop/core/drop_cost.h"

#include <numeric>

#include "learndrop/core/text.h"
#include "learndrop/error.h"

namespace ld::core {

DropCost::DropCost(const ModelProfile& profile, std::vector<std::int64_t> input_shape, const CachePlan& plan)
    : views_(plan.views), shifts_(plan.feature_augment && plan.shift_flip.max_shift > 0) {
  profile_.stage_flops = profile.stage_flops;
  profile_.head_flops = profile.head_flops;
  row_bytes_ = {0};  // index 0 unused: cut 0 reads the data
  for (const auto& out : profile.stage_output_shapes) row_bytes_.push_back(static_cast<double>(plan.row_bytes(out)));
  input_bytes_ = 4.0 * static_cast<double>(std::accumulate(input_shape.begin(), input_shape.end(), std::int64_t{1},
                                                           std::multiplies<std::int64_t>()));
}

nlohmann::json DropCost::to_json() const {
  return {{"stage_flops", profile_.stage_flops}, {"head_flops", profile_.head_flops}, {"input_bytes", input_bytes_},
          {"row_bytes", row_bytes_},           {"views", views_},                   {"shifts", shifts_}};
}

DropCost DropCost::from_json(const nlohmann::json& j) {
  DropCost c;
  for (const char* key : {"stage_flops", "head_flops", "input_bytes", "row_bytes", "views", "shifts"}) {
    if (!j.contains(key)) throw Error(std::string("the cost model has no '") + key + "'");
  }
  try {
    c.profile_.stage_flops = j.at("stage_flops").get<std::vector<std::int64_t>>();
    c.profile_.head_flops = j.at("head_flops").get<std::int64_t>();
    c.input_bytes_ = j.at("input_bytes").get<double>();
    c.row_bytes_ = j.at("row_bytes").get<std::vector<double>>();
    c.views_ = j.at("views").get<std::int64_t>();
    c.shifts_ = j.at("shifts").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("the cost model: a field has the wrong type (") + e.what() + ")");
  }
  if (c.row_bytes_.size() != c.profile_.stage_flops.size() + 1) {
    throw Error("the cost model has " + std::to_string(c.row_bytes_.size()) + " row sizes for " +
                std::to_string(c.profile_.stage_flops.size()) + " stages (expected one more)");
  }
  return c;
}

double DropCost::step_work(std::size_t cache_cut, std::size_t frozen) const {
  const double forward_only = static_cast<double>(profile_.stage_range_flops(cache_cut, frozen));
  const double trained = static_cast<double>(profile_.flops_from(frozen));
  // The batch's input: a decoded image, or a cached row (copied once more when shifted).
  const double bytes = cache_cut == 0 ? input_bytes_ : row_bytes_.at(cache_cut) * (shifts_ ? 2.0 : 1.0);
  return forward_only + 3.0 * trained + kFlopsPerByte * bytes;
}

double DropCost::row_work(std::size_t from, std::size_t to) const {
  const double in = from == 0 ? input_bytes_ : row_bytes_.at(from);
  return static_cast<double>(profile_.stage_range_flops(from, to)) + kFlopsPerByte * (in + row_bytes_.at(to));
}

DropCost::Prediction DropCost::predict(std::size_t cache_cut, std::size_t frozen, std::size_t target, DropMode mode,
                                       std::int64_t images_ahead, std::int64_t cached_samples,
                                       std::int64_t arriving) const {
  Prediction p;
  p.mode = mode;
  const double now = step_work(cache_cut, frozen);
  const auto views = static_cast<double>(views_);
  if (mode == DropMode::kCache) {
    p.saved = static_cast<double>(images_ahead) * (now - step_work(target, target));
    p.cost = views * (static_cast<double>(cached_samples) * row_work(cache_cut, target) +
                      static_cast<double>(arriving) * row_work(0, target));
    // Without the drop, later arrivals add rows at the current cache cut.
    if (cache_cut > 0) p.cost -= views * static_cast<double>(arriving) * row_work(0, cache_cut);
  } else {
    p.saved = static_cast<double>(images_ahead) * (now - step_work(cache_cut, target));
  }
  return p;
}

std::string effective_drop_mode(const std::string& drop_mode, DropModeHint hint) {
  if (drop_mode != "auto" || hint == DropModeHint::kAny) return drop_mode;
  return hint == DropModeHint::kCache ? "cache" : "freeze";
}

DropPlan plan_drop(const DropCost& cost, const std::string& drop_mode, bool guard, std::size_t cache_cut,
                   std::size_t frozen, std::size_t target, std::int64_t images_ahead, std::int64_t cached_samples,
                   std::int64_t arriving) {
  DropPlan plan;
  std::vector<DropMode> modes;
  if (drop_mode != "freeze") modes.push_back(DropMode::kCache);
  if (drop_mode != "cache") modes.push_back(DropMode::kFreeze);
  bool have = false;
  for (DropMode m : modes) {
    const DropCost::Prediction p = cost.predict(cache_cut, frozen, target, m, images_ahead, cached_samples, arriving);
    plan.options.push_back(p);
    if (!have || p.net() > plan.chosen.net() || (p.net() == plan.chosen.net() && m == DropMode::kFreeze)) {
      plan.chosen = p;
      have = true;
    }
  }
  plan.mode = plan.chosen.mode;
  plan.drop = !guard || plan.chosen.net() > 0;
  if (!plan.drop) {
    plan.held = "cost guard: dropping to cut " + std::to_string(target) + " (" + to_string(plan.mode) + ") saves " +
                format_flops(plan.chosen.saved) + " over the remaining schedule but costs " +
                format_flops(plan.chosen.cost);
  }
  return plan;
}

}  // namespace ld::core
