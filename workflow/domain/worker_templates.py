"""The two Ground Truth worker templates (Liquid/HTML) this workflow writes: the adjustment job's,
which shows the pre-labels as boxes to edit, and the verification job's, which draws them and asks
for a verdict. Both read the pre-labels from ``task.input.manifestLine.<attribute>`` (the built-in
pre-annotation Lambda passes the whole manifest line); user text is escaped so Liquid never reads it.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from workflow.domain.groundtruth import label_category_config, validate_label_attribute_name
from workflow.domain.verification import VERDICT_CORRECT


def _html_text(text: str) -> str:
    # Braces become entities so Liquid never reads user text as a tag or an output.
    return html.escape(text).replace("{", "&#123;").replace("}", "&#125;")


def adjustment_ui_template(attribute: str, header: str, labels: Sequence[str]) -> str:
    """A Liquid/HTML worker template that shows the ``attribute`` pre-labels as adjustable boxes.

    The built-in pre-annotation Lambda passes the whole manifest line as
    ``task.input.manifestLine``; the boxes reach the worker only through ``initial-value``.
    ``labels`` are listed in the instructions; the widget's labels come from the job's label
    category configuration (``task.input.labels``).
    """
    validate_label_attribute_name(attribute, "bounding-box")
    label_config = label_category_config(labels)  # same limits as the job
    items = "".join(f"<li>{_html_text(e['label'])}</li>" for e in label_config["labels"])
    line = f"task.input.manifestLine.{attribute}"
    return f"""<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-bounding-box
    name="boundingBox"
    src="{{{{ task.input.taskObject | grant_read_access }}}}"
    header="{_html_text(header)}"
    labels="{{{{ task.input.labels | to_json | escape }}}}"
    initial-value="[
      {{% for box in {line}.annotations %}}
        {{% capture class_id %}}{{{{ box.class_id }}}}{{% endcapture %}}
        {{% assign label = {line}-metadata.class-map[class_id] %}}
        {{
          label: {{{{ label | to_json }}}},
          left: {{{{ box.left }}}},
          top: {{{{ box.top }}}},
          width: {{{{ box.width }}}},
          height: {{{{ box.height }}}},
        }},
      {{% endfor %}}
    ]"
  >
    <full-instructions header="Adjust the machine pre-labels">
      <p>Each box was drawn by a model. Move or resize boxes that are off, fix wrong labels,
      delete boxes around nothing and draw boxes the model missed.</p>
      <p>Label categories:</p><ul>{items}</ul>
    </full-instructions>
    <short-instructions>
      <p>Check every pre-drawn box: adjust, relabel, delete or add boxes so each object of a
      listed category has exactly one tight box.</p>
    </short-instructions>
  </crowd-bounding-box>
</crowd-form>
"""


def verification_ui_template(attribute: str, header: str) -> str:
    """A Liquid/HTML worker template: the frame with the ``attribute`` boxes drawn, and a verdict.

    The boxes are drawn in an SVG over the image, in the frame's pixel coordinates; the worker
    chooses one of :func:`verification_categories`.
    """
    line = f"task.input.manifestLine.{attribute}"
    text = _html_text(header)
    return f"""<script src="https://assets.crowd.aws/crowd-html-elements.js"></script>
<crowd-form>
  <crowd-classifier name="verdict" categories="{{{{ task.input.labels | to_json | escape }}}}"
                    header="{text}">
    <classification-target>
      {{% assign size = {line}.image_size[0] %}}
      <svg viewBox="0 0 {{{{ size.width }}}} {{{{ size.height }}}}" style="width: 100%">
        <image href="{{{{ task.input.taskObject | grant_read_access }}}}"
               width="{{{{ size.width }}}}" height="{{{{ size.height }}}}"/>
        {{% for box in {line}.annotations %}}
          {{% capture class_id %}}{{{{ box.class_id }}}}{{% endcapture %}}
          <rect x="{{{{ box.left }}}}" y="{{{{ box.top }}}}" width="{{{{ box.width }}}}"
                height="{{{{ box.height }}}}" fill="none" stroke="#ff0000" stroke-width="2"/>
          <text x="{{{{ box.left }}}}" y="{{{{ box.top }}}}" fill="#ff0000" font-size="14">
            {{{{ {line}-metadata.class-map[class_id] | escape }}}}</text>
        {{% endfor %}}
      </svg>
    </classification-target>
    <full-instructions header="Verify the machine labels">
      <p>Each box was drawn by models. Choose "{VERDICT_CORRECT}" only if every object of the
      listed classes has one tight box with the right class and no box is wrong.</p>
    </full-instructions>
    <short-instructions>
      <p>Are all boxes right, and is no object missing?</p>
    </short-instructions>
  </crowd-classifier>
</crowd-form>
"""
