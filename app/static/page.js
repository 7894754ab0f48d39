// resnet-serve web page: classify chosen or dropped images with POST /predict, one request per
// image, and show a heat map from POST /explain on demand. Plain browser JavaScript, no build step.
// URLs are relative so the page also works behind a proxy that serves it under a path prefix.
// Text from the server or from file names is only ever set with textContent, never as HTML.
"use strict";

const MAX_PARALLEL_REQUESTS = 4;
const MODEL_RETRY_MS = 2000;

const elements = {
  modelInfo: document.getElementById("model-info"),
  modelField: document.getElementById("model-field"),
  modelChoice: document.getElementById("model-choice"),
  dropZone: document.getElementById("drop-zone"),
  fileInput: document.getElementById("file-input"),
  topK: document.getElementById("top-k"),
  apiKeyField: document.getElementById("api-key-field"),
  apiKey: document.getElementById("api-key"),
  clear: document.getElementById("clear-results"),
  status: document.getElementById("status"),
  results: document.getElementById("results"),
};
const objectUrls = [];
const queue = [];
let running = 0;

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function announce(text) {
  elements.status.textContent = text;
}

function authHeaders() {
  const key = elements.apiKey.value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

function showApiKeyField() {
  elements.apiKeyField.hidden = false;
}

function sentence(text) {
  return /[.!?]$/.test(text) ? text : `${text}.`;
}

function formatMs(ms) {
  return ms >= 100 ? `${Math.round(ms)} ms` : `${ms.toFixed(1)} ms`;
}

// What a failed answer means, in one sentence built around the server's own error.message.
async function errorText(response) {
  let code = "";
  let message = `${response.status} ${response.statusText}`.trim();
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      code = body.error.code || "";
      message = body.error.message;
    }
  } catch {
    // Not our JSON error shape (a proxy's page, say): the status line is all there is.
  }
  if (response.status === 401) {
    showApiKeyField();
    return `API key needed or not accepted: ${message}`;
  }
  if (response.status === 503 || response.status === 429) {
    const retryAfter = response.headers.get("Retry-After");
    const busy = code === "not_ready" ? "The model is not ready" : "The server is busy";
    const retry = retryAfter ? ` Retry after ${retryAfter} s.` : "";
    return `${busy}: ${sentence(message)}${retry}`;
  }
  if (response.status === 413) return `Too large: ${message}`;
  if (code === "invalid_image") return `Not a usable image: ${message}`;
  return message;
}

function networkErrorText(error) {
  return `Could not reach the server (${error.message}).`;
}

// --- the model line ----------------------------------------------------------------------------

// The model chosen, as the query every call names it by ("" on a server of one model).
function modelQuery() {
  const chosen = elements.modelChoice.value;
  return chosen ? new URLSearchParams({ model: chosen }) : new URLSearchParams();
}

// A server of several models: one option each, shown while there is a choice to make; rebuilt
// from the server's list each time a model is described (at load, and at each choice).
function listModels(model) {
  const listed = [...elements.modelChoice.options].map((option) => option.value);
  if (listed.join("\n") !== model.models.join("\n")) {
    elements.modelChoice.replaceChildren(
      ...model.models.map((name) => {
        const option = element("option", "", name);
        option.value = name;
        return option;
      }),
    );
  }
  elements.modelChoice.value = model.name;
  elements.modelField.hidden = model.models.length < 2;
}

async function loadModel() {
  let response;
  try {
    response = await fetch(`model?${modelQuery()}`, { headers: { Accept: "application/json" } });
  } catch (error) {
    elements.modelInfo.textContent = networkErrorText(error);
    return;
  }
  if (response.status === 503) {
    elements.modelInfo.textContent = "The model is still loading; this line updates when it is ready.";
    setTimeout(loadModel, MODEL_RETRY_MS);
    return;
  }
  if (!response.ok) {
    elements.modelInfo.textContent = await errorText(response);
    return;
  }
  const model = await response.json();
  listModels(model);
  elements.modelInfo.textContent =
    `Model ${model.name}: ${model.arch}, ${model.num_classes} classes ` +
    `(${model.labels.join(", ")}), ${model.input_size}×${model.input_size} input.`;
  elements.topK.max = String(model.num_classes);
  if (Number(elements.topK.value) > model.num_classes) {
    elements.topK.value = String(model.num_classes);
  }
}

// --- one card per image ------------------------------------------------------------------------

function thumbnail(file) {
  const url = URL.createObjectURL(file);
  objectUrls.push(url);
  const img = element("img", "thumb");
  img.alt = `Preview of ${file.name}`;
  img.addEventListener("error", () => {
    img.replaceWith(element("div", "no-preview", "No preview"));
  });
  img.src = url;
  return img;
}

function createCard(file) {
  const card = element("li", "result");
  card.dataset.name = file.name;
  card.setAttribute("aria-busy", "true");
  const body = element("div", "result-body");
  body.append(element("h3", "file-name", file.name), element("p", "state", "Waiting…"));
  card.append(thumbnail(file), body);
  elements.results.prepend(card);
  return card;
}

function setState(card, text) {
  card.querySelector(".state").textContent = text;
}

function showError(card, text) {
  card.setAttribute("aria-busy", "false");
  card.querySelector(".state").replaceWith(element("p", "error", text));
  announce(`${card.dataset.name}: ${text}`);
}

function showPrediction(card, file, answer) {
  const result = answer.results[0];
  const list = element("ol", "predictions");
  list.setAttribute("aria-label", `Top ${result.predictions.length} classes`);
  for (const prediction of result.predictions) {
    const percent = prediction.score * 100;
    const item = element("li", "prediction");
    const bar = element("span", "bar");
    bar.setAttribute("aria-hidden", "true");
    const fill = element("span", "bar-fill");
    fill.style.width = `${percent.toFixed(1)}%`; // CSSOM, allowed by the page's style-src 'self'
    bar.append(fill);
    item.append(
      element("span", "label", prediction.label),
      element("span", "score", `${percent.toFixed(1)}%`),
      bar,
    );
    list.append(item);
  }
  const timing = element(
    "p",
    "timing",
    `${formatMs(answer.total_ms)} total · batch of ${result.batch_size} · ` +
      `queued ${formatMs(result.queue_ms)} · inference ${formatMs(result.inference_ms)}`,
  );
  const explain = element("button", "explain", "Explain");
  explain.type = "button";
  explain.setAttribute("aria-label", `Explain the prediction for ${file.name}`);
  explain.addEventListener("click", () => requestExplanation(card, file, explain));

  card.setAttribute("aria-busy", "false");
  card.querySelector(".state").replaceWith(list);
  const body = card.querySelector(".result-body");
  // An abstained answer (top score below the threshold, or a "none of these" class) is not to be
  // acted on: say so above the bars, in words; the scores stay below it.
  if (result.abstained) {
    const verdict = element("p", "abstained");
    verdict.append(
      element("strong", "", "None of these"),
      ": the image shows none of the model's classes, or the model is unsure. Its scores:",
    );
    body.insertBefore(verdict, list);
  }
  body.append(timing, explain);
  const top = result.predictions[0];
  if (top) {
    const timed = `in ${formatMs(answer.total_ms)}`;
    const scored = `${top.label}, ${(top.score * 100).toFixed(1)}%`;
    announce(
      result.abstained
        ? `${file.name}: none of these (top score ${scored}), ${timed}.`
        : `${file.name}: ${scored}, ${timed}.`,
    );
  }
}

function imageForm(file) {
  const form = new FormData();
  form.append("file", file, file.name);
  return form;
}

async function classify(card, file) {
  setState(card, "Classifying…");
  const params = modelQuery();
  if (elements.topK.value) params.set("top_k", elements.topK.value);
  let response;
  try {
    response = await fetch(`predict?${params}`, {
      method: "POST",
      body: imageForm(file),
      headers: authHeaders(),
    });
  } catch (error) {
    showError(card, networkErrorText(error));
    return;
  }
  if (!response.ok) {
    showError(card, await errorText(response));
    return;
  }
  showPrediction(card, file, await response.json());
}

// The class a heat map explains; /explain sends it percent-encoded (labels may be non-ASCII).
function explainedLabel(response) {
  const header = response.headers.get("X-Explained-Label");
  try {
    return header ? decodeURIComponent(header) : "";
  } catch {
    return header;
  }
}

async function requestExplanation(card, file, button) {
  const body = card.querySelector(".result-body");
  body.querySelector(".heatmap, .explain-error")?.remove();
  button.disabled = true;
  button.textContent = "Explaining…";
  let outcome;
  try {
    const params = modelQuery();
    params.set("format", "png");
    const response = await fetch(`explain?${params}`, {
      method: "POST",
      body: imageForm(file),
      headers: { ...authHeaders(), Accept: "image/png" },
    });
    if (response.ok) {
      const url = URL.createObjectURL(await response.blob());
      objectUrls.push(url);
      const figure = element("figure", "heatmap");
      const label = explainedLabel(response);
      const img = element("img");
      img.src = url;
      img.alt = `Heat map for ${file.name}: the regions that weighed most for ${label || "its top class"}`;
      const caption = label ? `Where the model saw “${label}”` : "Heat map from /explain";
      figure.append(img, element("figcaption", "", caption));
      outcome = figure;
      announce(`${file.name}: heat map shown.`);
    } else {
      const text =
        response.status === 404 ? "This server has no /explain route." : await errorText(response);
      outcome = element("p", "error explain-error", `Explain failed: ${text}`);
      announce(`${file.name}: explain failed: ${text}`);
    }
  } catch (error) {
    outcome = element("p", "error explain-error", `Explain failed: ${networkErrorText(error)}`);
    announce(outcome.textContent);
  }
  button.disabled = false;
  button.textContent = "Explain";
  body.append(outcome);
}

// --- choosing and dropping ---------------------------------------------------------------------

function pump() {
  while (running < MAX_PARALLEL_REQUESTS && queue.length > 0) {
    const { card, file } = queue.shift();
    running += 1;
    classify(card, file).finally(() => {
      running -= 1;
      pump();
    });
  }
}

function addFiles(fileList) {
  const files = Array.from(fileList);
  if (files.length === 0) return;
  announce(`Classifying ${files.length} image${files.length === 1 ? "" : "s"}…`);
  // Cards are created in order, each prepended, so the newest choice is on top; requests start in order.
  for (const file of files) queue.push({ card: createCard(file), file });
  pump();
}

elements.fileInput.addEventListener("change", () => {
  addFiles(elements.fileInput.files);
  elements.fileInput.value = ""; // choosing the same file again is a new change
});

for (const type of ["dragenter", "dragover"]) {
  elements.dropZone.addEventListener(type, (event) => {
    event.preventDefault();
    elements.dropZone.classList.add("dragging");
  });
}
elements.dropZone.addEventListener("dragleave", (event) => {
  if (!elements.dropZone.contains(event.relatedTarget)) {
    elements.dropZone.classList.remove("dragging");
  }
});
elements.dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  elements.dropZone.classList.remove("dragging");
  addFiles(event.dataTransfer.files);
});
// A file dropped just beside the box must not replace the page with the image.
for (const type of ["dragover", "drop"]) {
  window.addEventListener(type, (event) => event.preventDefault());
}

elements.clear.addEventListener("click", () => {
  queue.length = 0;
  elements.results.replaceChildren();
  for (const url of objectUrls.splice(0)) URL.revokeObjectURL(url);
  announce("Results cleared.");
});

elements.modelChoice.addEventListener("change", loadModel);

if (document.body.dataset.apiKeys === "on") showApiKeyField();
loadModel();
