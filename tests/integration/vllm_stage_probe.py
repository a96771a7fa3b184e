"""Run inside the vLLM environment (.vllm-venv) by tests/integration/test_vllm_engine.py; prints one JSON object.

The model stage with `engine="vllm"`, in this process, without Ray, on a tied checkpoint:
- `prompt_ids`: per task prompt, the prompt token ids vLLM fed the model (image tokens, <bos>, prompt,
  "\\n") and the ids the transformers processor gives for the same prompt and image;
- `rows`: the stage's output for a batch of three images and every task, one of whose questions is
  longer than the engine's --max-model-len, so that vLLM refuses that request.
"""

import json
import sys

import numpy as np
from PIL import Image

from pipelines.model.generation import GenerationRequest
from pipelines.stages.generate import GenerateStage
from pipelines.tasks.registry import TASKS
from schemas import columns as C
from schemas.job import PromptOptions, VllmSettings

POISON = "is this " + "a very long question " * 40 + "?"  # about 250 tokens: past the engine's max_model_len


def main(model: str, vae: str) -> None:
    from vllm import SamplingParams  # only in the vLLM environment

    options = PromptOptions(classes=("circle", "square"), questions=("what colour is the circle?",),
                            answers=("red",), per_image_questions=True,
                            max_new_tokens=(("detect", 24), ("segment", 30), ("caption", 12), ("ocr", 8),
                                            ("answer", 8), ("question", 8)))
    stage = GenerateStage(model, None, list(TASKS), options, batch_size=8, vae=vae, device="cpu", engine="vllm",
                          vllm_settings=VllmSettings(max_num_seqs=32, max_model_len=200))
    engine = stage.engine
    size = engine.processor.image_processor.size["height"]
    pixels = np.random.default_rng(0).integers(0, 255, (3, size, size, 3), dtype=np.uint8)

    prompts = [prompt for task in TASKS.values() for prompt in task.build_prompts(options, "how many shapes?")]
    fed = engine.llm.generate(
        [{"prompt": prompt, "multi_modal_data": {"image": Image.fromarray(pixels[0])}} for prompt in prompts],
        SamplingParams(temperature=0.0, max_tokens=1), use_tqdm=False)
    expected = [engine.processor(text="<image>" + prompt, images=[pixels[0]], do_resize=False,
                                 return_tensors="np")["input_ids"][0].tolist() for prompt in prompts]
    prompt_ids = [{"prompt": p, "vllm": list(out.prompt_token_ids), "transformers": ids}
                  for p, out, ids in zip(prompts, fed, expected)]

    # The same requests straight through the engine, to compare with the stage's rows below.
    direct = engine.generate([GenerationRequest(0, "caption", "caption en", pixels[0], 12)])[0]

    batch = {
        C.IMAGE_ID: np.array(["a", "b", "c"], dtype=object),
        C.SOURCE_URI: np.array(["file:///a.png", "file:///b.png", "file:///c.png"], dtype=object),
        C.QUESTION: np.array(["", POISON, "how many shapes?"], dtype=object),
        C.DONE_TASKS: C.list_column([[], [], []]),
        C.PIXELS: pixels,
        C.WIDTH: np.array([640, 640, 640]),
        C.HEIGHT: np.array([480, 480, 480]),
        C.ERROR: np.array(["", "", ""], dtype=object),
    }
    out = stage(batch)
    rows = [{name: (value if isinstance(value, str | int | float) else str(value)) for name, value in zip(out, values)
             if name in (C.IMAGE_ID, C.TASK, C.PROMPT, C.STATUS, C.ERROR, C.RAW_OUTPUT, C.FINISH_REASON)}
            for values in zip(*out.values())]
    print(json.dumps({"prompt_ids": prompt_ids, "rows": rows, "poison": POISON,
                      "direct_caption": direct.text, "max_model_len": engine.max_model_len}))


if __name__ == "__main__":  # vLLM starts processes with spawn: the guard is required
    main(sys.argv[1], sys.argv[2])
