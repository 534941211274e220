# learndrop_add_plugin(<target> <source>...)
#
# Builds a LearnDrop plugin library (a MODULE named ldp_<target>.so) from the
# given sources against the SDK, with hidden visibility. The host loads it from
# its built-in folder, from `plugins.paths` in a config or from the
# LEARNDROP_PLUGIN_PATH environment variable.
function(learndrop_add_plugin target)
  add_library(${target} MODULE ${ARGN})
  target_link_libraries(${target} PRIVATE LearnDrop::sdk)
  set_target_properties(${target} PROPERTIES
    PREFIX ""
    OUTPUT_NAME "ldp_${target}"
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    POSITION_INDEPENDENT_CODE ON)
  target_compile_features(${target} PRIVATE cxx_std_17)
  # Inside the LearnDrop tree: share the torch precompiled header and put the
  # library in the host's built-in plugin folder.
  if(TARGET learndrop_pch)
    target_precompile_headers(${target} REUSE_FROM learndrop_pch)
  endif()
  if(DEFINED LEARNDROP_PLUGIN_OUTPUT_DIR)
    set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY ${LEARNDROP_PLUGIN_OUTPUT_DIR})
  endif()
endfunction()
