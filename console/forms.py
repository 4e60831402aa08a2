"""Forms of the console's admin pages: explain/simulate and replay."""

from __future__ import annotations

import jwt
from django import forms
from django.core.exceptions import ValidationError

from mappings.models import PIPELINE_SOURCES, Issuer, validate_pin_id


class ExplainForm(forms.Form):
    """Either job facts typed in, or a pasted ID token decoded WITHOUT verification (never stored)."""

    issuer = forms.ModelChoiceField(
        queryset=Issuer.objects.all(), to_field_name="name", required=False, empty_label="(from the token's iss)"
    )
    project_path = forms.CharField(
        required=False, max_length=255, help_text="e.g. platform/web", widget=forms.TextInput(attrs={"size": 60})
    )
    project_id = forms.CharField(
        required=False,
        validators=[validate_pin_id],  # what a token's id claim may hold, as pins store it
        label="Project id",
        help_text="Optional: the project's GitLab id (project_id conditions, identity pins), e.g. 20",
    )
    namespace_id = forms.CharField(
        required=False,
        validators=[validate_pin_id],  # what a token's id claim may hold, as pins store it
        label="Namespace id",
        help_text="Optional: the namespace's GitLab id (namespace_id conditions, identity pins), e.g. 72",
    )
    ref = forms.CharField(required=False, max_length=255, help_text="branch or tag name, e.g. main")
    ref_type = forms.ChoiceField(choices=[("branch", "branch"), ("tag", "tag")], initial="branch")
    protected = forms.BooleanField(required=False, help_text="The ref is protected")
    environment = forms.CharField(required=False, max_length=255, help_text="Leave empty for a job without one")
    pipeline_source = forms.ChoiceField(choices=[(s, s) for s in PIPELINE_SOURCES], initial="push")
    role_arn = forms.CharField(
        required=False,
        max_length=255,
        label="Role ARN",
        help_text="Optional: the role wanted",
        widget=forms.TextInput(attrs={"size": 60}),
    )
    token = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80, "autocomplete": "off", "spellcheck": "false"}),
        help_text="Or paste a GitLab ID token: it is decoded without checking its signature, only to read its "
        "claims, and is never stored or logged.",
    )

    def clean(self):
        super().clean()
        data = self.cleaned_data
        raw = (data.get("token") or "").strip()
        if raw:
            try:
                claims = jwt.decode(raw, options={"verify_signature": False})
            except jwt.PyJWTError:
                raise ValidationError({"token": "This is not a readable JWT."}) from None
            if not isinstance(claims, dict):
                raise ValidationError({"token": "The token's payload is not a JSON object."})
            issuer = data.get("issuer") or Issuer.objects.filter(url=claims.get("iss")).first()
            if issuer is None:
                raise ValidationError({"issuer": f"No registered issuer has the token's iss {claims.get('iss')!r}."})
            data["claims"] = claims
        else:
            if data.get("issuer") is None:
                raise ValidationError({"issuer": "Choose the issuer (or paste a token)."})
            if not data.get("project_path") or not data.get("ref"):
                raise ValidationError("Give at least the project path and the ref (or paste a token).")
            issuer = data["issuer"]
            claims = {
                "iss": issuer.url,
                "project_path": data["project_path"],
                "namespace_path": data["project_path"].rpartition("/")[0],
                "ref": data["ref"],
                "ref_type": data["ref_type"],
                "ref_protected": "true" if data.get("protected") else "false",
                "pipeline_source": data["pipeline_source"],
            }
            if data.get("environment"):
                claims["environment"] = data["environment"]
            claims.update({name: data[name] for name in ("project_id", "namespace_id") if data.get(name)})
            data["claims"] = claims
        data["issuer_obj"] = issuer
        data["token"] = ""  # nothing downstream needs it
        return data


class ReplayForm(forms.Form):
    config = forms.CharField(
        required=False,
        label="Proposed configuration (YAML)",
        widget=forms.Textarea(attrs={"rows": 16, "spellcheck": "false"}),
    )
    config_file = forms.FileField(required=False, label="…or upload the file")
    days = forms.IntegerField(
        min_value=1, max_value=90, initial=7, help_text="Replay the audit events of the last N days"
    )

    MAX_BYTES = 1_000_000

    def clean(self):
        super().clean()
        data = self.cleaned_data
        upload = data.get("config_file")
        if upload is not None:
            if upload.size > self.MAX_BYTES:
                raise ValidationError({"config_file": "The file is larger than 1 MB."})
            try:
                data["config"] = upload.read().decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError({"config_file": "The file is not UTF-8 text."}) from None
        if not (data.get("config") or "").strip():
            raise ValidationError("Paste or upload a configuration file.")
        return data
